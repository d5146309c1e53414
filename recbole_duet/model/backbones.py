"""The RecBole models DUET can take its static layers from: the one place that knows which, and why not.

DUET never re-implements a backbone: it instantiates RecBole's own class with the run's Config (whose
defaults already hold the backbone's yaml, see :mod:`recbole_duet.config`). A RecBole sequential model is a
*next-item* backbone when it keeps SASRec's contract:

* ``forward(item_seq, item_seq_len)`` (or ``forward(item_seq)``) reads nothing but the device's own sequence
  and returns one user vector ``[B, D]``;
* that vector is scored against the item table ``item_embedding`` (``D`` wide), with ``loss_fct`` for the
  CE/BPR loss.

The signature is read from the class itself; what a signature cannot tell (a forward returning per-position
states or per-item probabilities, a table other than ``item_embedding``) is declared in :data:`REFUSED`, and a
scoring other than the dot product in :data:`SCORINGS`. DIN (one logit per user-item pair) has its own DUET
class and is used through :mod:`recbole_duet.model.din_head`. With ``generator_input: backbone`` the
per-position states come through :class:`SequenceStatesTap`, for backbones whose forward calls
``gather_indexes``.
"""

import functools
import inspect
import os

import recbole
import torch
import torch.nn.functional as F
import yaml
from recbole.model import sequential_recommender
from recbole.model.abstract_recommender import SequentialRecommender

from recbole_duet.errors import ConfigError

SEQUENCE_ARGUMENTS = ("item_seq", "item_seq_len")
# Models with a sequence-only signature that still break the contract, and why.
REFUSED = {
    "BERT4Rec": "its forward returns every position's state and it trains by masked-item prediction, not one user vector",
    "RepeatNet": "its forward returns a probability for every item (a repeat/explore mixture), not a user vector",
    "SASRecCPR": "its forward returns every position's state, scored by Softmax-CPR's several facets",
    "GRU4RecCPR": "its forward returns every position's state, scored by Softmax-CPR's several facets",
    "KSR": "it scores against items embedded from item_embedding and knowledge-graph entities, not item_embedding",
    "S3Rec": "its forward returns every position's state (a self-supervised pre-training model)",
}
# Backbones used through their own DUET class (the rest are next-item backbones).
PAIRWISE_BACKBONES = ("DIN",)
# Parts of a backbone setting's name that mark it as shaping training only, not what trained weights compute.
TRAINING_ONLY_SETTINGS = ("dropout", "initializer_range", "loss_type")


def _models():
    """Every RecBole sequential model, by name."""
    return {
        name: cls
        for name, cls in vars(sequential_recommender).items()
        if inspect.isclass(cls) and issubclass(cls, SequentialRecommender) and cls is not SequentialRecommender
    }


@functools.lru_cache(maxsize=None)
def _forward_arguments(cls):
    return tuple(list(inspect.signature(cls.forward).parameters)[1:])


def is_pairwise(name):
    """Whether backbone ``name`` scores (user, item) pairs (DIN) rather than ranking every item from a user vector:
    the one rule behind its own model classes and the settings refused with it."""
    return name in PAIRWISE_BACKBONES


def refusal(name):
    """Why DUET cannot wrap the RecBole sequential model ``name`` (``None`` when it can)."""
    if is_pairwise(name):
        return None
    if name in REFUSED:
        return REFUSED[name]
    arguments = _forward_arguments(_models()[name])
    if arguments not in (SEQUENCE_ARGUMENTS, SEQUENCE_ARGUMENTS[:1]):
        needs = "the user id" if any(argument.startswith("user") for argument in arguments) else "more"
        return f"it needs {needs}, its forward takes ({', '.join(arguments)}), DUET only has the device's item sequence"
    return None


BACKBONE_CLASSES = {name: cls for name, cls in sorted(_models().items()) if refusal(name) is None}
REFUSED_BACKBONES = {name: refusal(name) for name in sorted(_models()) if name not in BACKBONE_CLASSES}


def check_backbone(name):
    """Raise :class:`ConfigError` unless ``name`` is a backbone DUET can wrap, saying which ones it can and why."""
    known = isinstance(name, str)
    if known and name in BACKBONE_CLASSES:
        return
    supported = f"one of {list(BACKBONE_CLASSES)}"
    same_but_case = [backbone for backbone in BACKBONE_CLASSES if known and backbone.lower() == name.lower()]
    if same_but_case:
        raise ConfigError("backbone", name, f"'{same_but_case[0]}' (backbone names are case-sensitive)")
    refused = known and name in REFUSED_BACKBONES
    raise ConfigError("backbone", name, f"{supported}; {name} is refused: {REFUSED_BACKBONES[name]}" if refused else supported)


def reads_states(name):
    """Does the backbone's forward read its user vector from per-position states (``gather_indexes``)?"""
    return name in BACKBONE_CLASSES and "self.gather_indexes(" in inspect.getsource(BACKBONE_CLASSES[name].forward)


def recbole_properties_dir():
    """RecBole's own yaml folder inside the installed recbole package."""
    return os.path.join(os.path.dirname(os.path.realpath(recbole.__file__)), "properties")


@functools.lru_cache(maxsize=None)
def function_settings(name):
    """The settings of backbone ``name`` (the keys of RecBole's yaml for it) that, with its weights, fix the
    function it computes: its dropout, initialisation and loss settings only shape training.

    A checkpoint trained under other values of some of them (SASRec's ``n_heads``, ``hidden_act``, DIN's
    ``pooling_mode``) has the same shapes, so it would load and silently compute something else.
    """
    path = os.path.join(recbole_properties_dir(), "model", f"{name}.yaml")
    if not os.path.isfile(path):
        return ()
    with open(path, encoding="utf-8") as file:
        keys = yaml.safe_load(file) or {}
    return tuple(key for key in keys if not any(part in key for part in TRAINING_ONLY_SETTINGS))


def build_backbone(config, dataset):
    """Instantiate the RecBole model named by ``config['backbone']``."""
    return BACKBONE_CLASSES[config["backbone"]](config, dataset)


def sequence_arguments(backbone, item_seq, item_seq_len):
    """The arguments of a next-item backbone's forward (``forward(item_seq)`` backbones ignore the lengths)."""
    return (item_seq,) if len(_forward_arguments(type(backbone))) == 1 else (item_seq, item_seq_len)


def encode_sequence(backbone, item_seq, item_seq_len):
    """A next-item backbone's user vectors ``[B, D]``."""
    return backbone(*sequence_arguments(backbone, item_seq, item_seq_len))


class DotProductScoring:
    """``user · item`` against ``item_embedding``, as SASRec and every contract backbone score.

    It only references the backbone's modules (the backbone owns and saves them), hence no ``nn.Module``.
    """

    def __init__(self, backbone):
        self.backbone = backbone

    def user(self, user_vector):
        """The user vector as it enters the dot product."""
        return user_vector

    def item(self, item_vectors):
        """Item embeddings as they enter the dot product."""
        return item_vectors

    def table(self, weight=None):
        """``[n_items, D]``: every item as scored (from ``weight`` in place of the item table, when given)."""
        return self.item(self.backbone.item_embedding.weight if weight is None else weight)

    def lookup(self, items, weight=None):
        """``[B, D]``: the given items as scored (from ``weight`` in place of the item table, when given)."""
        return self.item(self.backbone.item_embedding(items) if weight is None else F.embedding(items, weight))

    def full_sort(self, user_vector, weight=None):
        """``[B, n_items]`` scores of every item."""
        return self.user(user_vector) @ self.table(weight).transpose(0, 1)

    def pointwise(self, user_vector, items, weight=None):
        """``[B]`` scores of one item per row."""
        return (self.user(user_vector) * self.lookup(items, weight)).sum(dim=-1)


class CosineScoring(DotProductScoring):
    """CORE's robust distance: cosine of user and item, divided by ``temperature``; item dropout while training."""

    def user(self, user_vector):
        return F.normalize(user_vector, dim=-1) / self.backbone.temperature

    def item(self, item_vectors):
        return F.normalize(self.backbone.item_dropout(item_vectors), dim=-1)


SCORINGS = {"CORE": CosineScoring}


def item_scoring(name, backbone):
    """How the next-item backbone ``name`` scores a user vector against its items."""
    return SCORINGS.get(name, DotProductScoring)(backbone)


class SequenceStatesTap:
    """Keeps the per-position hidden states ``[B, L, H]`` a RecBole next-item model reads its user vector from.

    Such models end ``forward`` with ``self.gather_indexes(states, item_seq_len - 1)``; wrapping that call on
    the backbone instance hands DUET every position's state from the same forward pass, without changing the
    model's code or running it twice (a forward calling it more than once, as GCSAN's, leaves its last states).
    A probe pass at construction checks that the states are ``width`` wide, the width the generator reads.
    """

    def __init__(self, backbone, width):
        self.states = None
        gather_indexes = backbone.gather_indexes

        def gather_and_keep(states, gather_index):
            self.states = states
            return gather_indexes(states, gather_index)

        backbone.gather_indexes = gather_and_keep
        self._check_width(backbone, width)

    def _check_width(self, backbone, width):
        was_training = backbone.training
        probe = torch.ones(1, backbone.max_seq_length, dtype=torch.long)
        with torch.no_grad():
            encode_sequence(backbone.eval(), probe, torch.tensor([backbone.max_seq_length]))
        backbone.train(was_training)
        states = self.pop()
        if states is None or states.dim() != 3 or states.size(-1) != width:
            found = "not kept" if states is None else f"of shape {list(states.shape)}"
            raise ConfigError(
                "generator_input",
                "backbone",
                f"'window' with backbone {type(backbone).__name__}: its per-position states are {found}, "
                f"not [B, L, {width}] like its item embeddings",
            )

    def pop(self):
        """The states of the latest forward pass (released, so no stale batch is kept alive)."""
        states, self.states = self.states, None
        return states
