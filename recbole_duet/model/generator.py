"""Personalized Parameters Generator (PPG) and Stable Weight Adapter (SWA) of DUET.

Both read only the device's own real-time window, row by row (a GRU, per-row linear maps, attention within
a row), so a device's generated parameters never depend on which other devices share its batch. Every
weight is an ``nn.Module`` attribute, hence registered, trained, saved and moved with the model (the
authors' code kept its heads in plain Python lists).
"""

import math

import torch
from torch import nn

from recbole_duet.model.layers import INIT_STD, FullDelta, LowRankDelta


def _init_linear(linear, std):
    nn.init.normal_(linear.weight, 0.0, std)
    nn.init.zeros_(linear.bias)
    return linear


class FullWeightDecoder(nn.Module):
    """Decode a layer embedding into a full ``out x in`` weight update: ``h * out * in + out * in`` parameters."""

    def __init__(self, hidden_size, out_dim, in_dim):
        super().__init__()
        self.shape = (out_dim, in_dim)
        # Scaled by 1/sqrt(in) so the update's effect on an input starts small whatever the width.
        self.decoder = _init_linear(nn.Linear(hidden_size, out_dim * in_dim), INIT_STD / math.sqrt(in_dim))

    def forward(self, layer_embedding):
        return FullDelta(self.decoder(layer_embedding).view(-1, *self.shape))

    def output_layer(self):
        return self.decoder


class LowRankWeightDecoder(nn.Module):
    """Decode a layer embedding into ``left @ core @ right`` with a generated ``r x r`` core.

    Parameters: ``h * r^2 + r^2`` for the core decoder plus ``(out + in) * r`` for the shared bases, so the
    generator grows linearly in the layer width instead of with its square (cubically when ``h ~ D``).
    """

    def __init__(self, hidden_size, out_dim, in_dim, rank):
        super().__init__()
        self.rank = rank
        self.core_decoder = _init_linear(nn.Linear(hidden_size, rank * rank), INIT_STD)
        self.left = nn.Parameter(torch.randn(out_dim, rank) / math.sqrt(in_dim))
        self.right = nn.Parameter(torch.randn(rank, in_dim) / math.sqrt(in_dim))

    def forward(self, layer_embedding):
        core = self.core_decoder(layer_embedding).view(-1, self.rank, self.rank)
        return LowRankDelta(self.left, core, self.right)

    def output_layer(self):
        return self.core_decoder


class LayerBranch(nn.Module):
    """One PPG branch: the device code -> layer embedding ``e^(i)`` -> that layer's weight and bias update.

    ``rank`` is capped at the layer's smaller side (a rank above it cannot add anything).
    """

    def __init__(self, hidden_size, out_dim, in_dim, rank):
        super().__init__()
        rank = min(rank, out_dim, in_dim)
        self.layer_embedding = nn.Linear(hidden_size, hidden_size)
        self.weight_decoder = (
            FullWeightDecoder(hidden_size, out_dim, in_dim)
            if rank == 0
            else LowRankWeightDecoder(hidden_size, out_dim, in_dim, rank)
        )
        self.bias_decoder = _init_linear(nn.Linear(hidden_size, out_dim), INIT_STD)

    def forward(self, device_code):
        embedding = torch.tanh(self.layer_embedding(device_code))
        return self.weight_decoder(embedding), self.bias_decoder(embedding)

    def start_at_zero(self):
        """Zero the decoders' output weights (their biases start at 0): every update is 0 until training moves
        them, and their gradients are not 0."""
        for decoder in (self.weight_decoder.output_layer(), self.bias_decoder):
            nn.init.zeros_(decoder.weight)


def _window_mask(window, window_len):
    """``[B, W]``: True on the window's real slots (windows are left-aligned, padding after them)."""
    return torch.arange(window.size(1), device=window.device) < window_len.unsqueeze(1)


class WindowGRUEncoder(nn.Module):
    """Head encoder over the window's raw item embeddings: the GRU state after the window's last real item.

    A unidirectional GRU's output at step ``t`` reads only steps ``<= t`` and windows are left-aligned, so the
    output at the last real item is what a packed sequence would give, without packing (which sorts the batch
    and is slower on CPU); the padding after a window never reaches its code. The GRU runs time-major (the
    layout it computes in), which spares a copy of the window and of its outputs each way.
    """

    def __init__(self, input_dim, hidden_size):
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_size)

    def forward(self, window, window_len):
        output, _ = self.gru(window.transpose(0, 1))  # [W, B, h]
        last = (window_len - 1).view(1, -1, 1).expand(1, -1, output.size(-1))
        return output.gather(0, last).squeeze(0)


class PooledStateEncoder(nn.Module):
    """Head encoder over the backbone's own hidden states at the window's positions.

    Those states already carry the sequence's context, so a mean over the window's real slots and one
    ``tanh`` layer replace a second sequence encoder (``generator_input: backbone``).
    """

    def __init__(self, input_dim, hidden_size):
        super().__init__()
        self.project = nn.Linear(input_dim, hidden_size)

    def forward(self, window, window_len):
        is_real = _window_mask(window, window_len).unsqueeze(-1)
        mean = (window * is_real).sum(1) / window_len.unsqueeze(-1)
        return torch.tanh(self.project(mean))


class WindowAttentionEncoder(nn.Module):
    """Head encoder over the window's raw item embeddings without recurrence (``head_encoder: attention``).

    Each real item, tagged with how recent it is (a learned embedding per position from the newest), becomes a
    key; a learned query weighs the keys and the device code is their weighted sum. One ``[B * W, d] x [d, h]``
    product replaces a GRU's ``W`` dependent steps, so it is cheaper than :class:`WindowGRUEncoder`, and it
    still reads only the window, so a bundle can serve it. The query starts at zero: a plain mean at first.
    """

    def __init__(self, input_dim, hidden_size, window_size):
        super().__init__()
        self.recency = nn.Embedding(window_size, input_dim)
        nn.init.normal_(self.recency.weight, 0.0, INIT_STD)
        self.key = nn.Linear(input_dim, hidden_size)
        self.query = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, window, window_len):
        is_real = _window_mask(window, window_len)
        slots = torch.arange(window.size(1), device=window.device)
        age = (window_len.unsqueeze(1) - 1 - slots).clamp(min=0)  # 0 for the newest item of each window
        keys = torch.tanh(self.key(window + self.recency(age)))
        scores = (keys @ self.query).masked_fill(~is_real, float("-inf"))
        return (torch.softmax(scores, dim=-1).unsqueeze(1) @ keys).squeeze(1)


def build_head_encoder(generator_input, head_encoder, input_dim, hidden_size, window_size):
    """The PPG's head encoder: backbone states are pooled; a window of item embeddings goes through a GRU or
    attention (``head_encoder``)."""
    if generator_input == "backbone":
        return PooledStateEncoder(input_dim, hidden_size)
    if head_encoder == "attention":
        return WindowAttentionEncoder(input_dim, hidden_size, window_size)
    return WindowGRUEncoder(input_dim, hidden_size)


class ParameterGenerator(nn.Module):
    """PPG: a head encoder summarises the real-time window, one branch per dynamic layer decodes it.

    Args:
        input_dim (int): size of a window slot's vector (an item embedding, or a backbone state).
        layer_shapes (list of (int, int)): ``(out_dim, in_dim)`` of each dynamic layer.
        hidden_size (int): size ``h`` of the device code and of each layer embedding.
        rank (int): 0 for full weight updates, ``r > 0`` for the factorised decoder.
        generator_input (str): ``window`` (raw item embeddings) or ``backbone`` (backbone states, pooled).
        head_encoder (str): with ``window``, ``gru`` or ``attention`` (:func:`build_head_encoder`).
        window_size (int): the real-time window's length (the attention encoder's recency positions).
    """

    def __init__(self, input_dim, layer_shapes, hidden_size, rank, generator_input, head_encoder, window_size):
        super().__init__()
        self.head_encoder = build_head_encoder(generator_input, head_encoder, input_dim, hidden_size, window_size)
        self.branches = nn.ModuleList(LayerBranch(hidden_size, out, inp, rank) for out, inp in layer_shapes)

    def encode(self, window, window_len):
        """The device code ``[B, h]``."""
        return self.head_encoder(window, window_len)

    def forward(self, window, window_len):
        """Return ``[(weight_delta, bias_delta)]``, one pair per dynamic layer."""
        device_code = self.encode(window, window_len)
        return [branch(device_code) for branch in self.branches]

    def start_at_zero(self):
        """Generate zero updates at first, so a model starting from a trained backbone starts as that backbone."""
        for branch in self.branches:
            branch.start_at_zero()


class StableWeightAdapter(nn.Module):
    """SWA: per-layer gates in (0, 1) that scale the generated (adaptive) parameters element-wise.

    Following the paper's description: an embedding transformation of the window items, their
    self-similarity matrix (within one device's window only, padding masked), a similarity-weighted sum,
    pooled over the window, then one gate per output unit of each dynamic layer. A coherent window yields
    confident gates; an erratic one damps the update towards the global classifier, which is what keeps the
    generator from oscillating.
    """

    def __init__(self, item_dim, out_dims, hidden_size):
        super().__init__()
        self.out_dims = list(out_dims)
        self.transform = nn.Linear(item_dim, hidden_size)
        self.gate = _init_linear(nn.Linear(hidden_size, sum(self.out_dims)), INIT_STD)

    def forward(self, window_emb, window_len):
        """Return one gate per dynamic layer, ``[B, out_dim]`` each."""
        is_real = _window_mask(window_emb, window_len)
        keys = torch.tanh(self.transform(window_emb))
        similarity = keys @ keys.transpose(1, 2) / math.sqrt(keys.size(-1))
        similarity = similarity.masked_fill(~is_real.unsqueeze(1), float("-inf"))
        # The mean over real rows of (attention @ keys) is (the mean of those attention rows) @ keys: one
        # [W]-vector per device instead of a [W, W] x [W, h] product.
        attention = torch.softmax(similarity, dim=-1) * is_real.unsqueeze(-1)
        row_mean = attention.sum(1, keepdim=True) / window_len.view(-1, 1, 1)
        pooled = (row_mean @ keys).squeeze(1)
        gates = torch.sigmoid(self.gate(pooled))
        return list(gates.split(self.out_dims, dim=-1))
