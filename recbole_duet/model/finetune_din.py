r"""On-device fine-tuning on DIN (``model: Finetune`` with ``backbone: DIN``): each device tunes the cloud model's
prediction MLP (:mod:`recbole_duet.model.cloud_din`) on its own window, as DIN is trained.
"""

import torch
import torch.nn.functional as F

from recbole_duet.model.cloud_din import CloudDIN
from recbole_duet.model.finetune import mean_over_pairs, seeded_negatives, window_training_pairs
from recbole_duet.model.finetune_model import FinetuneBase


class FinetuneDIN(FinetuneBase, CloudDIN):
    r"""On-device fine-tuning of DIN's prediction MLP."""

    def __init__(self, config, dataset):
        super(FinetuneDIN, self).__init__(config, dataset)
        self.finetune_seed = config["seed"]

    def finetuned_parameters(self, user, item_seq, item_seq_len):
        """Each device's MLP after SGD on its own window: per layer ``([B, out, in], [B, out])``.

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

    def _scores_globally(self):
        return False

    def _personal_head(self, user, item_seq, item_seq_len):
        parameters = self.finetuned_parameters(user, item_seq, item_seq_len)
        return lambda mlp_input: self.head.forward_with_parameters(mlp_input, parameters)
