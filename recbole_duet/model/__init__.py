"""The plugin's model classes and their parts.

Two models on one cloud model (:mod:`recbole_duet.model.cloud`: a RecBole backbone with dynamic layers): ``model:
DUET``, which generates each device's dynamic layers (:class:`DUET` for the next-item backbones, :class:`DUETDIN`
for DIN), and ``model: Finetune``, the on-device fine-tuning baseline DUET replaces (:class:`Finetune`,
:class:`FinetuneDIN`). Each is one model for the user; :func:`plugin_class` picks the class from the backbone. The
submodules hold the generator and the Stable Weight Adapter (:mod:`recbole_duet.model.generator`), the dynamic
layers (:mod:`recbole_duet.model.layers`), the backbone rules (:mod:`recbole_duet.model.backbones`), the fine-tuning
computations (:mod:`recbole_duet.model.finetune`) and every key of both models (:mod:`recbole_duet.model.settings`).
"""

from recbole_duet.model.backbones import is_pairwise
from recbole_duet.model.cloud import CloudBase
from recbole_duet.model.duet import DUET, DUETBase
from recbole_duet.model.duet_din import DUETDIN
from recbole_duet.model.duet_item_side import ItemSideDUET
from recbole_duet.model.finetune_din import FinetuneDIN
from recbole_duet.model.finetune_model import Finetune

# The plugin's model names, each with its class for the next-item backbones and for DIN (the backbone's task).
PLUGIN_MODELS = {"DUET": (DUET, DUETDIN), "Finetune": (Finetune, FinetuneDIN)}
# The next-item class of a plugin model whose generated layers act on the items (``dynamic_side: item``).
ITEM_SIDE_MODELS = {"DUET": ItemSideDUET}


def plugin_class(name, backbone, dynamic_side="user"):
    """The class of the plugin model ``name`` on ``backbone`` with its generated layers on ``dynamic_side`` (an
    unknown backbone or side is reported by the config check)."""
    next_item, din = PLUGIN_MODELS[name]
    if is_pairwise(backbone):
        return din
    return ITEM_SIDE_MODELS.get(name, next_item) if dynamic_side == "item" else next_item


def model_name(model):
    """The plugin model ``model`` is (a name, or one of its classes: ``DUETDIN`` -> ``'DUET'``), None for any other."""
    def is_one_of(classes):
        return isinstance(model, type) and issubclass(model, classes)

    return next((name for name, classes in PLUGIN_MODELS.items() if model == name or is_one_of(classes)), None)


__all__ = ["CloudBase", "DUET", "DUETBase", "DUETDIN", "Finetune", "FinetuneDIN", "ITEM_SIDE_MODELS", "ItemSideDUET", "PLUGIN_MODELS", "model_name", "plugin_class"]
