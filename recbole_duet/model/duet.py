r"""DUET for RecBole's next-item backbones.

Reference:
    Zheqi Lv et al. "DUET: A Tuning-Free Device-Cloud Collaborative Parameters Generation Framework for
    Efficient Device Model Generalization." in WWW 2023.

DUET keeps a RecBole backbone (the *static layers*) and personalises its last layers (the *dynamic
layers*). The Universal Meta Network (UMN) trains those layers globally; the Personalized Parameters
Generator (PPG) maps each device's real-time window to an update of them, damped by the Stable Weight
Adapter (SWA). Training minimises ``L_ppg + umn_weight * L_umn``; evaluation scores with the generated
layers (or the global ones with ``duet_inference: global``). No gradient step is ever taken per device: the
on-device fine-tuning DUET replaces is a model of its own (:mod:`recbole_duet.model.finetune_model`) on the same
cloud model (:mod:`recbole_duet.model.cloud`).

:class:`DUETBase` holds what every backbone shares (the generator and the adapter); :class:`DUET` is the
next-item version for every RecBole model with SASRec's contract (see :mod:`recbole_duet.model.backbones`),
:class:`recbole_duet.model.duet_din.DUETDIN` the DIN version.
"""

import torch
import torch.nn.functional as F
from torch.func import functional_call

from recbole_duet.model.backbones import SequenceStatesTap, encode_sequence
from recbole_duet.model.cloud import CloudModel
from recbole_duet.model.generator import ParameterGenerator, StableWeightAdapter
from recbole_duet.model.layers import GeneratedLayer, realtime_window
from recbole_duet.model.warm_start import load_backbone_checkpoint


def _only_where(has_window, gate, bias_delta):
    """``gate`` (or ones) with the rows of devices without a window zeroed: their update vanishes, weight and bias."""
    keep = has_window.unsqueeze(1).to(bias_delta.dtype).expand_as(bias_delta)
    return keep if gate is None else gate * keep


class DUETBase:
    """The backbone-independent half of DUET: PPG, SWA and the settings of the generated layers.

    Mixed into a cloud model (``class DUET(DUETBase, CloudModel)``), which builds ``self.backbone`` and the dynamic
    layers (whose ``layer_shapes`` lists them); the subclass then calls :meth:`_build_generator` with the size of a
    window slot's vector.
    """

    def __init__(self, config, dataset):
        super(DUETBase, self).__init__(config, dataset)
        self.umn_weight = config["umn_weight"]
        self.ppg_scope = config["ppg_scope"]
        self.update_dropout = config["update_dropout"]
        self.generator_lr_scale = config["generator_lr_scale"]
        self.inference = config["duet_inference"]
        self.param_age = config["duet_param_age"]
        self.train_param_age = config["train_param_age"]
        if config["freeze_backbone"]:
            self.backbone.requires_grad_(False)

    @classmethod
    def starts_from_trained_model(cls, config):
        """Whether a DUET of ``config`` starts as a trained model (its backbone or its whole cloud model), which the
        runner then validates before the first epoch (:mod:`recbole_duet.training.starting_model`)."""
        return super().starts_from_trained_model(config) or config["backbone_checkpoint"] is not None

    @classmethod
    def trains_cloud_first(cls, config):
        """Whether a run of ``config`` is two trainings, the cloud model's and then the generator's on it
        (:mod:`recbole_duet.training.cloud_first`): ``training_order: cloud_first`` for a DUET that generates its layers
        and has no trained cloud model yet."""
        return (
            config["training_order"] == "cloud_first"
            and config["cloud_checkpoint"] is None
            and config["duet_inference"] == "generated"
        )

    def _build_generator(self, config, input_dim, layer_shapes):
        hidden_size = config["generator_hidden_size"]
        self.generator = ParameterGenerator(
            input_dim,
            layer_shapes,
            hidden_size,
            config["generator_rank"],
            config["generator_input"],
            config["head_encoder"],
            config["realtime_window"],
        )
        out_dims = [out_dim for out_dim, _ in layer_shapes]
        self.stabilizer = StableWeightAdapter(input_dim, out_dims, hidden_size) if config["stabilizer"] else None

    def load_starting_model(self, config):
        """Become the trained model ``config`` starts from (:meth:`starts_from_trained_model`), exactly: its weights
        loaded (a cloud model's, as :meth:`CloudBase.load_starting_model <recbole_duet.model.cloud.CloudBase.
        load_starting_model>`, or a backbone's), the generated update at zero.

        Raises:
            CheckpointError: naming the file, when it does not hold a model this one can start from.
        """
        super().load_starting_model(config)
        if config["backbone_checkpoint"] is not None:
            load_backbone_checkpoint(self.backbone, config["backbone_checkpoint"], config)
        self.generator.start_at_zero()

    def optimizer_parameter_groups(self, learning_rate):
        """The generator and the adapter at ``generator_lr_scale`` times ``learning_rate``, the rest at the rate.

        A hyper-network's output moves every device's layers at once, so it may want a smaller step than the
        layers it parameterises. None at a scale of 1: one plain group, as RecBole builds it (and as earlier
        training states saved their optimizer).
        """
        if self.generator_lr_scale == 1:
            return None
        generating = [self.generator] + ([self.stabilizer] if self.stabilizer is not None else [])
        generator_parameters = [parameter for module in generating for parameter in module.parameters()]
        generator_ids = {id(parameter) for parameter in generator_parameters}
        rest = [parameter for parameter in self.parameters() if id(parameter) not in generator_ids]
        return [{"params": rest}, {"params": generator_parameters, "lr": learning_rate * self.generator_lr_scale}]

    def window_end(self, item_seq_len):
        """Where each device's real-time window ends, and which devices have one.

        A deployed device keeps the parameters of its last request while its history moves on. Evaluating with
        ``duet_param_age: k`` reproduces that: the generator reads the window as it was ``k`` interactions before
        the scored one (its ``k`` newest items hidden), while the static layers read the whole history. A device
        with no interaction that old keeps the global layers. Training reads the current window, or with
        ``train_param_age: n`` a window aged by a random ``0 .. n`` per device and step, so that the generator
        learns updates that still hold some interactions after the request.

        Returns:
            tuple: the window's end ``[B]`` (at least 1, a valid history length) and ``[B]`` booleans, whether the
            device had a window then (None when every device has: no age applied).
        """
        age = self._window_age(item_seq_len)
        if age is None:
            return item_seq_len, None
        end = item_seq_len - age
        return end.clamp(min=1), end > 0

    def _window_age(self, item_seq_len):
        """How many interactions old each device's window is: None (current), ``duet_param_age`` when evaluating,
        a draw from ``0 .. train_param_age`` per device when training."""
        if not self.training:
            return self.param_age or None
        if self.train_param_age == 0:
            return None
        return torch.randint(0, self.train_param_age + 1, item_seq_len.shape, device=item_seq_len.device)

    def _generate(self, window, window_len, has_window=None):
        """Cloud side of DUET: real-time windows ``[B, W, d]`` -> one :class:`GeneratedLayer` per dynamic layer.

        ``has_window`` (from :meth:`window_end`): devices marked False get no update, i.e. the global layers.
        """
        updates = self.generator(window, window_len)
        gates = self.stabilizer(window, window_len) if self.stabilizer is not None else [None] * len(updates)
        gates = [self._drop_update_units(gate, bias) for (_, bias), gate in zip(updates, gates)]
        if has_window is not None:
            gates = [_only_where(has_window, gate, bias) for (_, bias), gate in zip(updates, gates)]
        return [GeneratedLayer(weight, bias, gate) for (weight, bias), gate in zip(updates, gates)]

    def _drop_update_units(self, gate, bias_delta):
        """Training-time dropout on the generated update (``update_dropout``), a regulariser for the generator.

        Each device's output units are dropped independently, the rest scaled by ``1 / (1 - p)``. The mask
        multiplies the gate, so a dropped unit loses its weight-row and its bias update together and the global
        layer alone answers for it; evaluation and deployment never drop anything.
        """
        if not self.training or self.update_dropout == 0:
            return gate
        keep = F.dropout(torch.ones_like(bias_delta), self.update_dropout)
        return keep if gate is None else gate * keep


class DUET(DUETBase, CloudModel):
    r"""DUET on a RecBole next-item backbone (``backbone: SASRec | GRU4Rec | NARM | ...``).

    The cloud model (:class:`recbole_duet.model.cloud.CloudModel`) gives the backbone, the dynamic layers and the
    scoring; the CE/BPR loss is the backbone's own. The generator reads the real-time window's item embeddings
    (``generator_input: window``) or the backbone's own hidden states at the window's positions (``backbone``).
    """

    def __init__(self, config, dataset):
        super(DUET, self).__init__(config, dataset)
        dim = self.backbone.item_embedding.embedding_dim
        self.states_tap = SequenceStatesTap(self.backbone, dim) if config["generator_input"] == "backbone" else None
        # With a trained cloud model the backbone and global layers stay fixed: L_ppg trains the generator and
        # the adapter only, and L_umn, having nothing left to train, is not computed.
        self.cloud_is_fixed = config["cloud_checkpoint"] is not None
        self._build_generator(config, dim, self.classifier.layer_shapes)

    def load_starting_model(self, config):
        """As :meth:`DUETBase.load_starting_model`; on a trained backbone the dynamic layers start as the identity."""
        super().load_starting_model(config)
        if config["backbone_checkpoint"] is not None:
            self.classifier.start_as_identity()

    def represent(self, item_seq, item_seq_len):
        """The backbone's user vectors ``[B, D]`` and, when the generator reads them, its states ``[B, L, D]``."""
        representation = encode_sequence(self.backbone, item_seq, item_seq_len)
        return representation, (self.states_tap.pop() if self.states_tap is not None else None)

    def _window_vectors(self, item_seq, item_seq_len, states=None):
        """What the generator reads: the real-time window's vectors ``[B, W, d]``, its lengths and ``has_window``
        (:meth:`window_end`)."""
        end, has_window = self.window_end(item_seq_len)
        if self.states_tap is None:
            window, window_len = realtime_window(item_seq, end, self.realtime_window_size)
            return self.backbone.item_embedding(window), window_len, has_window
        if states is None:
            _, states = self.represent(item_seq, item_seq_len)
        window_vectors, window_len = realtime_window(states, end, self.realtime_window_size)
        return window_vectors, window_len, has_window

    def generate(self, item_seq, item_seq_len, states=None, fixed_inputs=False):
        """Each device's generated layers, from its real-time window (``states``: from :meth:`represent`).

        ``fixed_inputs``: the window's vectors enter detached, so no gradient flows back into the backbone.
        """
        window_vectors, window_len, has_window = self._window_vectors(item_seq, item_seq_len, states)
        return self._generate(window_vectors.detach() if fixed_inputs else window_vectors, window_len, has_window)

    def device_code(self, item_seq, item_seq_len):
        """Each device's code ``[B, h]``: the generator's summary of its real-time window, which every generated
        layer is decoded from. How far it moved since a device's last request says how stale the device's
        parameters are (the ``drift`` request policy, :mod:`recbole_duet.device.request_policy`)."""
        window_vectors, window_len, _ = self._window_vectors(item_seq, item_seq_len)
        return self.generator.encode(window_vectors, window_len)

    def personalised_parameters(self, item_seq, item_seq_len):
        """The dynamic-layer weights a device receives: per layer ``([B, D, D], [B, D])``."""
        return self.classifier.personalised_parameters(self.generate(item_seq, item_seq_len))

    def forward(self, item_seq, item_seq_len):
        """User vectors ``[B, D]`` scored against item embeddings, through the ``duet_inference`` layers."""
        representation, states = self.represent(item_seq, item_seq_len)
        if self.inference == "global":
            return self.classifier(representation)
        return self.classifier(representation, self.generate(item_seq, item_seq_len, states))

    def _generator_only_loss(self, representation, states, interaction):
        """``L_ppg`` with the cloud model held fixed (``ppg_scope: generator``): only the generator and the adapter
        learn from it, so the backbone and the global layers train on ``L_umn`` alone, as the Layers model does,
        and the generated update learns to improve on that cloud model rather than reshaping it."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        generated = self.generate(item_seq, item_seq_len, states, fixed_inputs=True)
        fixed_layers = {name: value.detach() for name, value in self.classifier.named_parameters()}
        user_vector = functional_call(self.classifier, fixed_layers, (representation.detach(), generated))
        return self._recommendation_loss(user_vector, interaction, self.backbone.item_embedding.weight.detach())

    def _recommendation_loss(self, user_vector, interaction, item_weight=None):
        """The backbone's own loss (CE over all items, or BPR on the sampled negative), against ``item_weight`` in
        place of the item table when given."""
        pos_items = interaction[self.POS_ITEM_ID]
        if self.loss_type == "BPR":
            pos_score = self.scoring.pointwise(user_vector, pos_items, item_weight)
            neg_score = self.scoring.pointwise(user_vector, interaction[self.NEG_ITEM_ID], item_weight)
            return self.backbone.loss_fct(pos_score, neg_score)
        return self.backbone.loss_fct(self.scoring.full_sort(user_vector, item_weight), pos_items)

    def calculate_loss(self, interaction):
        """Return ``(L_ppg, umn_weight * L_umn)``; RecBole's trainer sums and logs them separately.

        With ``duet_inference: global`` the model is the UMN alone (the backbone with its dynamic layers as
        ordinary global layers), so only ``L_umn`` is trained and the generator is never run. With
        ``umn_weight: 0`` the UMN's scoring pass (a second full-catalogue loss) is skipped: its term is exactly 0.
        With ``ppg_scope: generator`` ``L_ppg`` reaches only the generator and the adapter, as it does with a fixed
        cloud model (``cloud_checkpoint``), whose ``L_umn`` would train nothing and is 0.
        """
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        representation, states = self.represent(item_seq, item_seq_len)
        if self.inference == "global":
            return self._recommendation_loss(self.classifier(representation), interaction)
        if self.ppg_scope == "generator":
            loss_ppg = self._generator_only_loss(representation, states, interaction)
        else:
            generated = self.generate(item_seq, item_seq_len, states)
            loss_ppg = self._recommendation_loss(self.classifier(representation, generated), interaction)
        if self.umn_weight == 0 or self.cloud_is_fixed:
            return loss_ppg, loss_ppg.new_zeros(())
        return loss_ppg, self.umn_weight * self._recommendation_loss(self.classifier(representation), interaction)
