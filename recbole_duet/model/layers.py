"""Building blocks shared by DUET's generator and classifier: the real-time window and the dynamic layers.

Shapes: ``B`` devices in a batch, ``D`` the width of the dynamic layers (the backbone's item-embedding size),
``L`` the number of dynamic layers, ``W`` the real-time window, ``r`` the generator rank.
"""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 0.02  # RecBole's ``initializer_range`` default, used for every layer DUET adds

ACTIVATION_FUNCTIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": F.gelu,
    "none": lambda x: x,
}


def realtime_window(item_seq, item_seq_len, size):
    """Return the last ``size`` real items of each history, left-aligned and zero-padded, and their count.

    RecBole stores a history left-aligned (items at ``0 .. len-1``, padding id 0 after them), so the device's
    real-time window is the slice ``[len - w, len)`` with ``w = min(len, size)``. A window longer than
    ``MAX_ITEM_LIST_LENGTH`` simply holds the whole stored history.

    Args:
        item_seq (torch.LongTensor): ``[B, max_len]`` item ids.
        item_seq_len (torch.LongTensor): ``[B]`` number of real items in each row (at least 1).
        size (int): the configured ``realtime_window``.

    Returns:
        tuple: ``([B, size]`` window item ids``, [B]`` window lengths``)``.
    """
    window_len = item_seq_len.clamp(min=1, max=size)
    offsets = torch.arange(size, device=item_seq.device)
    positions = (item_seq_len - window_len).unsqueeze(1) + offsets
    window = item_seq.gather(1, positions.clamp(max=item_seq.size(1) - 1))
    is_real = offsets.unsqueeze(0) < window_len.unsqueeze(1)
    return window * is_real, window_len


@dataclass
class FullDelta:
    """A generated ``[B, D, D]`` weight update, one full matrix per device."""

    weight: torch.Tensor

    def apply(self, x):
        return torch.bmm(self.weight, x.unsqueeze(-1)).squeeze(-1)

    def materialize(self):
        return self.weight


@dataclass
class LowRankDelta:
    """A generated weight update ``left @ core @ right`` where only the ``[B, r, r]`` core is per device.

    ``left`` (``[D, r]``) and ``right`` (``[r, D]``) are shared, learned bases (the APG factorisation), so
    applying the update costs ``O(D r)`` per device instead of ``O(D^2)``.
    """

    left: torch.Tensor
    core: torch.Tensor
    right: torch.Tensor

    def apply(self, x):
        projected = F.linear(x, self.right)
        mixed = torch.bmm(self.core, projected.unsqueeze(-1)).squeeze(-1)
        return F.linear(mixed, self.left)

    def materialize(self):
        return self.left @ self.core @ self.right


@dataclass
class GeneratedLayer:
    """The adaptive part of one dynamic layer for a batch of devices.

    The layer's weight is ``W_global + gate * weight_delta`` and its bias ``b_global + gate * bias_delta``,
    where ``gate`` (``[B, D]``, per output unit) comes from the Stable Weight Adapter, or is 1 without it.
    """

    weight_delta: object
    bias_delta: torch.Tensor
    gate: Optional[torch.Tensor] = None

    def _gated(self, value):
        return value if self.gate is None else self.gate * value

    def adaptive_output(self, x):
        """``(gate * delta_W) x + gate * delta_b`` for each device's own input row."""
        return self._gated(self.weight_delta.apply(x) + self.bias_delta)

    def adaptive_parameters(self):
        """The gated ``([B, D, D], [B, D])`` weight and bias updates, materialised."""
        weight = self.weight_delta.materialize()
        if self.gate is not None:
            weight = self.gate.unsqueeze(-1) * weight
        return weight, self._gated(self.bias_delta)


class DynamicClassifier(nn.Module):
    """DUET's dynamic layers, holding the Universal Meta Network's global weights.

    Each layer is residual, ``x <- x + act(W x + b)`` (no activation on the last layer), so a classifier
    whose weights are near zero is near the identity: the model starts as its backbone, and a generated
    update starts as a small correction of the global classifier. Called with ``generated`` layers it runs
    every device with its own personalised weights without materialising them.
    """

    def __init__(self, dim, n_layers, activation):
        super().__init__()
        self.n_layers = n_layers
        self.activation = ACTIVATION_FUNCTIONS[activation]
        self.weight = nn.Parameter(torch.empty(n_layers, dim, dim).normal_(0.0, INIT_STD))
        self.bias = nn.Parameter(torch.zeros(n_layers, dim))

    def extra_repr(self):
        n_layers, dim, _ = self.weight.shape
        return f"n_layers={n_layers}, dim={dim}"

    def _activate(self, layer, value):
        return self.activation(value) if layer < self.n_layers - 1 else value

    def forward(self, x, generated=None):
        """Map user representations ``[B, D]`` through the global or the ``generated`` layers."""
        for layer in range(self.n_layers):
            out = F.linear(x, self.weight[layer], self.bias[layer])
            if generated is not None:
                out = out + generated[layer].adaptive_output(x)
            x = x + self._activate(layer, out)
        return x

    def personalised_parameters(self, generated):
        """Each device's full dynamic-layer weights: a list of ``([B, D, D], [B, D])`` per layer."""
        parameters = []
        for layer, generated_layer in enumerate(generated):
            weight_delta, bias_delta = generated_layer.adaptive_parameters()
            parameters.append((self.weight[layer] + weight_delta, self.bias[layer] + bias_delta))
        return parameters

    def forward_with_parameters(self, x, parameters):
        """Run the layers with explicit per-device weights (what a device does with its payload)."""
        for layer, (weight, bias) in enumerate(parameters):
            out = torch.bmm(weight, x.unsqueeze(-1)).squeeze(-1) + bias
            x = x + self._activate(layer, out)
        return x
