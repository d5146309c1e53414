r"""On-device fine-tuning of the cloud model: the baseline DUET replaces, a model of its own (``model: Finetune``).

Each device copies the trained cloud model's dynamic layers (``finetune_scope: dynamic``) or every parameter
(``all``, the paper's baseline) and takes ``finetune_steps`` SGD steps at ``finetune_lr`` on its own real-time
window (:mod:`recbole_duet.model.finetune`), then scores with its copy. The cloud model is DUET's
(:mod:`recbole_duet.model.cloud`), trained first as a model of its own: ``model: DUET`` with ``duet_inference:
global``, the benchmarks' Layers model, whose checkpoint ``cloud_checkpoint`` names. Fine-tuning happens as a device
is scored, so a run of this model trains nothing: it validates and tests the cloud model as each device tunes it.

:class:`FinetuneBase` holds what every backbone shares; :class:`Finetune` is the next-item version,
:class:`recbole_duet.model.finetune_din.FinetuneDIN` the DIN one.
"""

import torch
import torch.nn.functional as F
from torch.func import functional_call

from recbole_duet.model.backbones import encode_sequence, sequence_arguments
from recbole_duet.model.cloud import CloudModel
from recbole_duet.model.finetune import (
    cut_at_prefix,
    finetune_all_parameters,
    finetune_per_device,
    mean_over_pairs,
    window_training_pairs,
)


class FinetuneBase:
    """The backbone-independent half of the fine-tuning baseline, mixed into a cloud model
    (``class Finetune(FinetuneBase, CloudModel)``): the SGD settings, and what a run of it is."""

    def __init__(self, config, dataset):
        super(FinetuneBase, self).__init__(config, dataset)
        self.finetune_steps = config["finetune_steps"]
        self.finetune_lr = config["finetune_lr"]

    @classmethod
    def has_nothing_to_train(cls, config):
        """Whether a run of ``config`` trains nothing (:func:`recbole_duet.quick_start.run_experiment`): always, since
        the cloud model comes trained (``cloud_checkpoint``, required) and each device tunes its copy as it is
        scored, so the run validates and tests the model as loaded."""
        return True

    def _finetune(self, global_layers, n_devices, device_losses):
        return finetune_per_device(global_layers, n_devices, device_losses, self.finetune_steps, self.finetune_lr)


class Finetune(FinetuneBase, CloudModel):
    r"""On-device fine-tuning on a RecBole next-item backbone: each device tunes the cloud model's dynamic layers, or
    every parameter with ``finetune_scope: all``, with CE over all items on its own window's next-item pairs."""

    def __init__(self, config, dataset):
        super(Finetune, self).__init__(config, dataset)
        self.finetune_scope = config["finetune_scope"]

    def finetuned_parameters(self, item_seq, item_seq_len):
        """Each device's dynamic layers after SGD on its own window: per layer ``([B, D, D], [B, D])``."""
        prefix_len, targets, is_pair = window_training_pairs(item_seq, item_seq_len, self.realtime_window_size)
        n_devices, n_pairs = targets.shape
        prefix_len = prefix_len.flatten()
        prefixes = cut_at_prefix(item_seq.repeat_interleave(n_pairs, dim=0), prefix_len)
        representation = encode_sequence(self.backbone, prefixes, prefix_len)
        representation = representation.detach().view(n_devices, n_pairs, -1)
        item_table = self.scoring.table().detach()

        def device_losses(parameters):
            user_vector = self.classifier.forward_with_parameters(representation, parameters)
            logits = self.scoring.user(user_vector) @ item_table.T
            pair_losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
            return mean_over_pairs(pair_losses.view(n_devices, n_pairs), is_pair)

        global_layers = list(zip(self.classifier.weight, self.classifier.bias))
        return self._finetune(global_layers, n_devices, device_losses)

    def _device_model_scores(self, parameters, item_seq, item_seq_len):
        """Scores ``[n, n_items]`` of histories under one device's own copy of the backbone and dynamic layers."""
        backbone = {name[len("backbone.") :]: value for name, value in parameters.items() if name.startswith("backbone.")}
        classifier = {name[len("classifier.") :]: value for name, value in parameters.items() if name.startswith("classifier.")}
        arguments = sequence_arguments(self.backbone, item_seq, item_seq_len)
        user_vector = functional_call(self.classifier, classifier, (functional_call(self.backbone, backbone, arguments),))
        return self.scoring.full_sort(user_vector, backbone["item_embedding.weight"])

    def finetuned_model_scores(self, item_seq, item_seq_len):
        """``finetune_scope: all``: each device tunes a copy of every backbone and dynamic-layer parameter on
        its own window (CE over all items, as :meth:`finetuned_parameters`), then scores every item ``[B, n_items]``."""
        prefix_len, targets, is_pair = window_training_pairs(item_seq, item_seq_len, self.realtime_window_size)
        start = {
            name: value for name, value in self.named_parameters() if name.startswith(("backbone.", "classifier."))
        }
        scores = []
        for history, length, lengths, device_targets, pairs in zip(item_seq, item_seq_len, prefix_len, targets, is_pair):
            histories = cut_at_prefix(history.expand(int(pairs.sum()), -1), lengths[pairs])

            def device_loss(parameters):
                logits = self._device_model_scores(parameters, histories, lengths[pairs])
                return F.cross_entropy(logits, device_targets[pairs])

            # A device without a single pair (a one-item history) has nothing to tune on.
            tuned = finetune_all_parameters(start, device_loss, self.finetune_steps, self.finetune_lr) if pairs.any() else start
            scores.append(self._device_model_scores(tuned, history.unsqueeze(0), length.unsqueeze(0)))
        return torch.cat(scores)

    def forward(self, item_seq, item_seq_len):
        """User vectors ``[B, D]`` through each device's fine-tuned dynamic layers (``finetune_scope: dynamic``;
        ``all`` has no shared item table to score against, so :meth:`predict` and :meth:`full_sort_predict` score it
        through :meth:`finetuned_model_scores`)."""
        representation = encode_sequence(self.backbone, item_seq, item_seq_len)
        return self.classifier.forward_with_parameters(representation, self.finetuned_parameters(item_seq, item_seq_len))

    def predict(self, interaction):
        if self.finetune_scope == "all":
            return self.full_sort_predict(interaction).gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
        return super().predict(interaction)

    def full_sort_predict(self, interaction):
        if self.finetune_scope == "all":
            return self.finetuned_model_scores(*self.device_inputs(interaction))
        return super().full_sort_predict(interaction)
