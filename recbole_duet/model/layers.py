"""Building blocks shared by DUET's generator and heads: the real-time window and generated layers.

Shapes: ``B`` devices in a batch, ``D`` a layer width, ``L`` the number of dynamic layers, ``W`` the
real-time window, ``r`` the generator rank. A generated layer maps ``in_dim -> out_dim``; inputs may carry
extra dimensions after the device one (``[B, ..., in_dim]``, e.g. one row per candidate item), and every
device's row uses that device's own parameters.
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


def window_positions(item_seq_len, size, max_seq_length):
    """Positions of the last ``size`` real items of each history and how many of them are real.

    RecBole stores a history left-aligned (items at ``0 .. len-1``, padding after them), so the device's
    real-time window is ``[len - w, len)`` with ``w = min(len, size)``. A window longer than
    ``MAX_ITEM_LIST_LENGTH`` simply holds the whole stored history.

    Returns:
        tuple: ``positions`` ``[B, size]`` (clamped into the sequence), ``window_len`` ``[B]``, and
        ``is_real`` ``[B, size]`` (False on padding slots).
    """
    window_len = item_seq_len.clamp(max=size)  # histories hold at least one item (entry points check)
    offsets = torch.arange(size, device=item_seq_len.device)
    positions = ((item_seq_len - window_len).unsqueeze(1) + offsets).clamp(max=max_seq_length - 1)
    return positions, window_len, offsets.unsqueeze(0) < window_len.unsqueeze(1)


def realtime_window(sequence, item_seq_len, size):
    """The last ``size`` real entries of each history, left-aligned and zero-padded, and their count.

    Args:
        sequence (torch.Tensor): ``[B, max_len]`` item ids, or ``[B, max_len, H]`` per-position states.
        item_seq_len (torch.LongTensor): ``[B]`` number of real items in each row (at least 1).
        size (int): the configured ``realtime_window``.

    Returns:
        tuple: ``[B, size]`` (or ``[B, size, H]``) window entries and ``[B]`` window lengths.
    """
    positions, window_len, is_real = window_positions(item_seq_len, size, sequence.size(1))
    if sequence.dim() == 3:
        positions = positions.unsqueeze(-1).expand(-1, -1, sequence.size(-1))
        is_real = is_real.unsqueeze(-1)
    return sequence.gather(1, positions) * is_real, window_len


def _per_device(value, like):
    """View a ``[B, D]`` per-device tensor so that it broadcasts over ``like``'s ``[B, ..., D]``."""
    return value.view(value.size(0), *([1] * (like.dim() - 2)), value.size(-1))


@dataclass
class FullDelta:
    """A generated ``[B, out, in]`` weight update, one full matrix per device."""

    weight: torch.Tensor

    def apply(self, x):
        return torch.einsum("boi,b...i->b...o", self.weight, x)

    def materialize(self):
        return self.weight


@dataclass
class LowRankDelta:
    """A generated weight update ``left @ core @ right`` where only the ``[B, r, r]`` core is per device.

    ``left`` (``[out, r]``) and ``right`` (``[r, in]``) are shared, learned bases (the APG factorisation), so
    applying the update costs ``O((in + out) r)`` per device instead of ``O(in * out)``.
    """

    left: torch.Tensor
    core: torch.Tensor
    right: torch.Tensor

    def apply(self, x):
        mixed = torch.einsum("bst,b...t->b...s", self.core, F.linear(x, self.right))
        return F.linear(mixed, self.left)

    def materialize(self):
        return self.left @ self.core @ self.right


@dataclass
class GeneratedLayer:
    """The adaptive part of one dynamic layer for a batch of devices.

    The layer's weight is ``W_global + gate * weight_delta`` and its bias ``b_global + gate * bias_delta``,
    where ``gate`` (``[B, out]``, per output unit) comes from the Stable Weight Adapter, or is 1 without it.
    """

    weight_delta: object
    bias_delta: torch.Tensor
    gate: Optional[torch.Tensor] = None

    def _gated(self, value):
        return value if self.gate is None else _per_device(self.gate, value) * value

    def linear(self, x, global_weight, global_bias):
        """``x W^T + b`` with each device's personalised ``W`` and ``b``, without materialising them."""
        adaptive = self.weight_delta.apply(x) + _per_device(self.bias_delta, x)
        return F.linear(x, global_weight, global_bias) + self._gated(adaptive)

    def personalise(self, global_weight, global_bias):
        """The materialised per-device ``([B, out, in], [B, out])`` weight and bias."""
        weight = self.weight_delta.materialize()
        if self.gate is not None:
            weight = self.gate.unsqueeze(-1) * weight
        return global_weight + weight, global_bias + self._gated(self.bias_delta)


def linear_layer(x, weight, bias, generated=None):
    """A global linear layer, or its personalised version when ``generated`` is given."""
    return F.linear(x, weight, bias) if generated is None else generated.linear(x, weight, bias)


def per_device_linear(x, weight, bias):
    """``x W^T + b`` with explicit ``[B, out, in]`` / ``[B, out]`` per-device parameters."""
    return torch.einsum("boi,b...i->b...o", weight, x) + _per_device(bias, x)


class ResidualClassifier(nn.Module):
    """The dynamic layers of next-item backbones (SASRec, GRU4Rec), holding the UMN's global weights.

    Each layer is residual, ``x <- x + act(W x + b)`` (no activation on the last layer), so a classifier
    whose weights are near zero is near the identity: the model starts as its backbone, and a generated
    update starts as a small correction of the global classifier.
    """

    def __init__(self, dim, n_layers, activation):
        super().__init__()
        self.activation = ACTIVATION_FUNCTIONS[activation]
        self.weight = nn.Parameter(torch.empty(n_layers, dim, dim).normal_(0.0, INIT_STD))
        self.bias = nn.Parameter(torch.zeros(n_layers, dim))

    @property
    def layer_shapes(self):
        n_layers, dim, _ = self.weight.shape
        return [(dim, dim)] * n_layers

    def extra_repr(self):
        return f"n_layers={len(self.layer_shapes)}, dim={self.weight.size(-1)}"

    def start_as_identity(self):
        """Zero weights and biases: every residual layer adds 0 until training moves it (its gradient is not 0)."""
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def _step(self, layer, x, out):
        return x + (self.activation(out) if layer < len(self.layer_shapes) - 1 else out)

    def forward(self, x, generated=None):
        """Map user representations ``[B, D]`` through the global or the ``generated`` layers."""
        for layer in range(len(self.layer_shapes)):
            layer_generated = None if generated is None else generated[layer]
            x = self._step(layer, x, linear_layer(x, self.weight[layer], self.bias[layer], layer_generated))
        return x

    def personalised_parameters(self, generated):
        """Each device's full dynamic-layer weights: a list of ``([B, D, D], [B, D])`` per layer."""
        return [layer.personalise(self.weight[i], self.bias[i]) for i, layer in enumerate(generated)]

    def forward_with_parameters(self, x, parameters):
        """Run the layers with explicit per-device weights (what a device does with its payload)."""
        for layer, (weight, bias) in enumerate(parameters):
            x = self._step(layer, x, per_device_linear(x, weight, bias))
        return x
