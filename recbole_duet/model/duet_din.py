r"""DUET on DIN.

``model: DUET`` with ``backbone: DIN``. RecBole's DIN provides the static layers (feature embeddings and
target-aware attention pooling); its prediction MLP (hidden layers from ``mlp_hidden_size`` and the final
logit layer) are the dynamic layers, trained globally as the UMN and personalised by the generator from
the device's real-time window (embedded with DIN's own item-feature embeddings). The task is DIN's:
pointwise click-through prediction with BCE on sampled negatives.
"""

import torch
import torch.nn.functional as F
from recbole.utils import InputType
from torch import nn

from recbole_duet.model.device_rows import DeviceRows
from recbole_duet.model.din_head import DINPredictionHead, DINTap, item_feature_embedding
from recbole_duet.model.duet import DUETBase
from recbole_duet.model.finetune import mean_over_pairs, seeded_negatives, window_training_pairs
from recbole_duet.model.layers import realtime_window


class DUETDIN(DUETBase):
    r"""DUET whose dynamic layers are DIN's prediction MLP."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super(DUETDIN, self).__init__(config, dataset)
        self.LABEL_FIELD = config["LABEL_FIELD"]
        self.eval_batch_size = config["eval_batch_size"]
        self.finetune_seed = config["seed"]
        self.tap = DINTap(self.backbone)
        self.head = DINPredictionHead(self.backbone)
        item_dim = self.backbone.att_list[0] // 4  # DIN's attention input is [q, k, q-k, q*k] of item features
        self._build_generator(config, item_dim, self.head.layer_shapes)
        self.loss = nn.BCEWithLogitsLoss()

    def device_inputs(self, interaction):
        """What a device uploads, in the argument order of :meth:`generate` and the parameter methods."""
        return interaction[self.USER_ID], interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]

    def _window_vectors(self, user, item_seq, item_seq_len):
        """The real-time window embedded with DIN's item features ``[B, W, d]``, its lengths and ``has_window``."""
        end, has_window = self.window_end(item_seq_len)
        window, window_len = realtime_window(item_seq, end, self.realtime_window_size)
        window_emb = item_feature_embedding(self.backbone, user, window) * (window > 0).unsqueeze(-1)
        return window_emb, window_len, has_window

    def generate(self, user, item_seq, item_seq_len):
        """Each device's generated MLP layers, from its real-time window embedded with DIN's item features."""
        return self._generate(*self._window_vectors(user, item_seq, item_seq_len))

    def device_code(self, user, item_seq, item_seq_len):
        """Each device's code ``[B, h]``, the generator's summary of its window (see :meth:`DUET.device_code`)."""
        window_emb, window_len, _ = self._window_vectors(user, item_seq, item_seq_len)
        return self.generator.encode(window_emb, window_len)

    def finetuned_parameters(self, user, item_seq, item_seq_len):
        """The fine-tuning baseline: each device's MLP after SGD on its own window.

        Each window item is a click (label 1) after the history before it, paired with one uniformly drawn
        item as a non-click (label 0), as DIN is trained. The non-clicks are seeded by RecBole's ``seed`` and
        the device's own inputs (:func:`seeded_negatives`), so a device always ends up with the same MLP.
        """
        prefix_len, targets, is_pair = window_training_pairs(item_seq, item_seq_len, self.realtime_window_size)
        n_devices, n_pairs = targets.shape
        negatives = seeded_negatives([user, item_seq, item_seq_len], n_pairs, self.n_items, self.finetune_seed)
        candidates = torch.stack([targets, negatives], dim=-1)
        labels = torch.tensor([1.0, 0.0], device=targets.device).expand_as(candidates)
        rows = 2 * n_pairs
        _, mlp_input = self.tap(
            user.repeat_interleave(rows),
            item_seq.repeat_interleave(rows, dim=0),
            prefix_len.repeat_interleave(2, dim=1).flatten(),
            candidates.flatten(),
        )
        mlp_input = mlp_input.detach().view(n_devices, rows, -1)

        def device_losses(parameters):
            logits = self.head.forward_with_parameters(mlp_input, parameters).view_as(labels)
            pair_losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=-1)
            return mean_over_pairs(pair_losses, is_pair)

        global_layers = [(linear.weight, linear.bias) for linear in self.head.linears]
        return self._finetune(global_layers, n_devices, device_losses)

    def _personal_head(self, user, item_seq, item_seq_len):
        """The ``duet_inference`` MLP for these devices (``mlp_input -> logit``), or None for the global one."""
        if self.inference == "global":
            return None
        if self.inference == "finetune":
            parameters = self.finetuned_parameters(user, item_seq, item_seq_len)
            return lambda mlp_input: self.head.forward_with_parameters(mlp_input, parameters)
        generated = self.generate(user, item_seq, item_seq_len)
        return lambda mlp_input: self.head(mlp_input, generated)

    def _logits(self, user, item_seq, item_seq_len, items):
        """``(generated_logit, global_logit)`` for one candidate item per row."""
        global_logit, mlp_input = self.tap(user, item_seq, item_seq_len, items)
        return self.head(mlp_input, self.generate(user, item_seq, item_seq_len)), global_logit

    def _inputs(self, interaction):
        return (*self.device_inputs(interaction), interaction[self.ITEM_ID])

    def personalised_parameters(self, user, item_seq, item_seq_len):
        """The MLP weights a device receives: per layer ``([B, out, in], [B, out])``."""
        return self.head.personalised_parameters(self.generate(user, item_seq, item_seq_len))

    def calculate_loss(self, interaction):
        """Return ``(L_ppg, umn_weight * L_umn)`` (BCE on DIN's click labels); ``L_umn`` alone with
        ``duet_inference: global``, where the model is DIN itself and the generator is never run."""
        label = interaction[self.LABEL_FIELD]
        if self.inference == "global":
            global_logit, _ = self.tap(*self._inputs(interaction))
            return self.loss(global_logit, label)
        generated_logit, global_logit = self._logits(*self._inputs(interaction))
        return self.loss(generated_logit, label), self.umn_weight * self.loss(global_logit, label)

    def predict(self, interaction):
        """One score per (device, candidate) row, personalising each distinct device once.

        Under RecBole's sampled evaluation (``uni100``) a device's inputs repeat on each of its candidate
        rows; :class:`DeviceRows` groups them so the device's MLP is generated (or fine-tuned) once.
        """
        user, item_seq, item_seq_len, items = self._inputs(interaction)
        global_logit, mlp_input = self.tap(user, item_seq, item_seq_len, items)
        if self.inference == "global":
            return torch.sigmoid(global_logit)
        rows = DeviceRows(user, item_seq, item_seq_len)
        personal_head = self._personal_head(*rows.devices)
        return torch.sigmoid(rows.ungroup(personal_head(rows.group(mlp_input))))

    def full_sort_predict(self, interaction):
        """Scores ``[B, n_items]``: personalise each device's layers once, then score all items in chunks.

        RecBole's fallback for models without this method repeats the whole interaction once per item and
        calls :meth:`predict`, which would re-run the generator for every (device, item) pair.
        """
        user, item_seq, item_seq_len = self.device_inputs(interaction)
        n_devices = len(user)
        personal_head = self._personal_head(user, item_seq, item_seq_len)
        chunk_size = max(1, self.eval_batch_size // n_devices)
        scores = []
        for items in torch.arange(self.n_items, device=item_seq.device).split(chunk_size):
            n_items = len(items)
            global_logit, mlp_input = self.tap(
                user.repeat_interleave(n_items),
                item_seq.repeat_interleave(n_items, dim=0),
                item_seq_len.repeat_interleave(n_items),
                items.repeat(n_devices),
            )
            if personal_head is None:
                logit = global_logit.view(n_devices, n_items)
            else:
                logit = personal_head(mlp_input.view(n_devices, n_items, -1))
            scores.append(torch.sigmoid(logit))
        return torch.cat(scores, dim=1)
