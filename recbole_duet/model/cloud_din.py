r"""The cloud model on DIN: RecBole's DIN, whose prediction MLP (hidden layers from ``mlp_hidden_size`` and the final
logit layer) is the dynamic layers.

DIN provides the static layers (feature embeddings and target-aware attention pooling); its MLP, trained as DIN
trains it, is the global layers that :class:`recbole_duet.model.duet_din.DUETDIN` generates an update of and
:class:`recbole_duet.model.finetune_din.FinetuneDIN` tunes per device. The task is DIN's: pointwise click-through
prediction with BCE on sampled negatives.
"""

import torch
from recbole.utils import InputType
from torch import nn

from recbole_duet.model.cloud import CloudBase
from recbole_duet.model.device_rows import DeviceRows
from recbole_duet.model.din_head import DINPredictionHead, DINTap


class CloudDIN(CloudBase):
    r"""DIN with its prediction MLP as the dynamic layers, scored globally unless a subclass personalises it
    (:meth:`_scores_globally`, :meth:`_personal_head`)."""

    input_type = InputType.POINTWISE
    cloud_is_backbone = True  # DIN's MLP is the global layers

    def __init__(self, config, dataset):
        super(CloudDIN, self).__init__(config, dataset)
        self.LABEL_FIELD = config["LABEL_FIELD"]
        self.eval_batch_size = config["eval_batch_size"]
        self.tap = DINTap(self.backbone)
        self.head = DINPredictionHead(self.backbone)
        self.loss = nn.BCEWithLogitsLoss()

    def cloud_modules(self):
        return {"backbone": self.backbone}

    def device_inputs(self, interaction):
        """What a device uploads, in the argument order of the parameter methods."""
        return interaction[self.USER_ID], interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]

    def _inputs(self, interaction):
        return (*self.device_inputs(interaction), interaction[self.ITEM_ID])

    def _scores_globally(self):
        """Whether every device is scored with the global MLP, as the cloud model itself is."""
        return True

    def _personal_head(self, user, item_seq, item_seq_len):
        """These devices' own MLP (``mlp_input -> logit``), where :meth:`_scores_globally` says they have one."""
        raise NotImplementedError

    def predict(self, interaction):
        """One score per (device, candidate) row, personalising each distinct device once.

        Under RecBole's sampled evaluation (``uni100``) a device's inputs repeat on each of its candidate
        rows; :class:`DeviceRows` groups them so the device's MLP is generated (or fine-tuned) once.
        """
        user, item_seq, item_seq_len, items = self._inputs(interaction)
        global_logit, mlp_input = self.tap(user, item_seq, item_seq_len, items)
        if self._scores_globally():
            return torch.sigmoid(global_logit)
        rows = DeviceRows(user, item_seq, item_seq_len)
        personal_head = self._personal_head(*rows.devices)
        return torch.sigmoid(rows.ungroup(personal_head(rows.group(mlp_input))))

    def full_sort_predict(self, interaction):
        """Scores ``[B, n_items]``: personalise each device's layers once, then score all items in chunks.

        RecBole's fallback for models without this method repeats the whole interaction once per item and
        calls :meth:`predict`, which would personalise the MLP again for every (device, item) pair.
        """
        user, item_seq, item_seq_len = self.device_inputs(interaction)
        n_devices = len(user)
        personal_head = None if self._scores_globally() else self._personal_head(user, item_seq, item_seq_len)
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
