"""What DUET needs from RecBole's DIN, taken without re-implementing it.

* :func:`item_feature_embedding` embeds items with DIN's own feature embedding layer, concatenating an
  item's features as ``DIN.forward`` does (the real-time window is embedded this way).
* :class:`DINTap` runs ``DIN.forward`` unchanged and keeps the input of DIN's prediction MLP through a
  forward pre-hook; ``DIN.forward`` itself returns the global logit (the UMN's prediction).
* :class:`DINPredictionHead` runs DIN's own prediction MLP (``dnn_mlp_layers`` + ``dnn_predict_layers``)
  with generated weights.

Where normalisation lives: the MLP's batch norm belongs to the global (static) path, which normalises with
batch statistics while training, as DIN does. The generated path always normalises with that layer's
*running* statistics and affine weights, so a device's output depends on its own row only, in training
and in evaluation, alone or in any batch. (RecBole's ``Dice`` has a fixed ``alpha`` and no batch
statistics, so it is applied as is.)
"""

import torch
from torch import nn

from recbole_duet.model.layers import linear_layer, per_device_linear


def item_feature_embedding(din, user, items):
    """``[B, n, F * E]``: each item's sparse and dense feature embeddings, concatenated as in DIN."""
    sparse, dense = din.embedding_layer(user, items)
    features = torch.cat([table for table in (sparse["item"], dense["item"]) if table is not None], dim=-2)
    return features.flatten(start_dim=-2)


class DINTap:
    """Call RecBole's DIN and return ``(global_logit, mlp_input)``."""

    def __init__(self, din):
        self.din = din
        self.captured = {}
        din.dnn_mlp_layers.register_forward_pre_hook(self._keep_mlp_input)

    def _keep_mlp_input(self, module, args):
        self.captured["mlp_input"] = args[0]

    def __call__(self, user, item_seq, item_seq_len, items):
        global_logit = self.din(user, item_seq, item_seq_len, items)
        return global_logit, self.captured.pop("mlp_input")


def normalise_with_running_statistics(batch_norm, x):
    """Batch norm in evaluation form over the last dimension: per row, whatever else is in the batch."""
    scale = batch_norm.weight * torch.rsqrt(batch_norm.running_var + batch_norm.eps)
    return (x - batch_norm.running_mean) * scale + batch_norm.bias


class DINPredictionHead:
    """DIN's prediction MLP as DUET's dynamic layers.

    It only references DIN's modules (the backbone owns, registers and saves them), hence no ``nn.Module``.
    """

    def __init__(self, din):
        self.mlp_modules = list(din.dnn_mlp_layers.mlp_layers)
        self.linears = [module for module in self.mlp_modules if isinstance(module, nn.Linear)]
        self.linears.append(din.dnn_predict_layers)

    @property
    def layer_shapes(self):
        return [(linear.out_features, linear.in_features) for linear in self.linears]

    def _run(self, x, apply_linear):
        layer = 0
        for module in self.mlp_modules:
            if isinstance(module, nn.Linear):
                x = apply_linear(layer, x)
                layer += 1
            elif isinstance(module, nn.BatchNorm1d):
                x = normalise_with_running_statistics(module, x)
            else:
                x = module(x)  # dropout and activation
        return apply_linear(layer, x).squeeze(-1)

    def __call__(self, mlp_input, generated):
        """Logits ``[B, ...]`` from ``mlp_input`` ``[B, ..., in]`` with each device's generated layers."""
        return self._run(
            mlp_input, lambda i, x: linear_layer(x, self.linears[i].weight, self.linears[i].bias, generated[i])
        )

    def personalised_parameters(self, generated):
        """Each device's MLP weights: a list of ``([B, out, in], [B, out])`` per layer."""
        return [layer.personalise(linear.weight, linear.bias) for layer, linear in zip(generated, self.linears)]

    def forward_with_parameters(self, mlp_input, parameters):
        """Run the MLP with explicit per-device weights (what a device does with its payload)."""
        return self._run(mlp_input, lambda i, x: per_device_linear(x, *parameters[i]))
