"""The two halves of a trained DUET model as ``nn.Module``s that ``torch.onnx.export`` can trace.

* :class:`GeneratorGraph` (cloud): a padded real-time window -> the per-device part of every generated
  layer, flat: ``layer<i>.weight`` (the ``r x r`` core, or the full ``out x in`` update when
  ``generator_rank: 0``), ``layer<i>.bias`` (bias update) and ``layer<i>.gate`` (Stable Weight Adapter).
* :class:`DeviceCodeGraph` (device): a history -> the device's code (the generator's summary of its window),
  which the ``drift`` request policy compares with the code of the device's last request.
* :class:`NextItemDeviceGraph` / :class:`DINDeviceGraph` (device): a history (and DIN's candidates) plus
  those tensors -> scores. Everything shared by all devices (static layers, global dynamic layers, the
  low-rank bases) is a constant of the device graph, so it ships once, in the bundle.

Both call the model's public methods (``generate``, ``represent``, ``classifier``, ``scoring``, ``head``, ``tap``) and
rebuild :class:`~recbole_duet.model.layers.GeneratedLayer` objects from the flat tensors, so the graphs
follow the model's code instead of copying it.
"""

import torch
from torch import nn

from recbole_duet.model.layers import FullDelta, GeneratedLayer, LowRankDelta

PARAMETER_KINDS = ("weight", "bias", "gate")


def parameter_name(layer, kind):
    return f"layer{layer}.{kind}"


def _shared_user(like):
    """DIN reads a user id only to embed user features it never uses for scoring: every device sends none."""
    return torch.zeros(like.shape[:1], dtype=torch.long, device=like.device)


class DeviceParameters:
    """The per-device tensors of a model's generated layers: their names and shapes, split and rebuilt.

    Built from one example :meth:`generate` call, which also holds the shared low-rank bases.
    """

    def __init__(self, example_layers):
        self.bases = [
            (layer.weight_delta.left, layer.weight_delta.right)
            if isinstance(layer.weight_delta, LowRankDelta)
            else None
            for layer in example_layers
        ]
        self.has_gate = example_layers[0].gate is not None
        self.layout = [
            (parameter_name(i, kind), tuple(tensor.shape[1:]))
            for i, layer in enumerate(example_layers)
            for kind, tensor in zip(PARAMETER_KINDS, self.flatten_layer(layer))
        ]

    @property
    def names(self):
        return [name for name, _ in self.layout]

    def flatten_layer(self, layer):
        delta = layer.weight_delta
        weight = delta.core if isinstance(delta, LowRankDelta) else delta.weight
        return (weight, layer.bias_delta) + ((layer.gate,) if self.has_gate else ())

    def flatten(self, generated):
        return tuple(tensor for layer in generated for tensor in self.flatten_layer(layer))

    def rebuild(self, flat):
        """The :class:`GeneratedLayer` list that ``flatten`` took apart."""
        per_layer = 3 if self.has_gate else 2
        layers = []
        for i, bases in enumerate(self.bases):
            weight, bias, *gate = flat[per_layer * i : per_layer * (i + 1)]
            delta = FullDelta(weight) if bases is None else LowRankDelta(bases[0], weight, bases[1])
            layers.append(GeneratedLayer(delta, bias, gate[0] if gate else None))
        return layers


class GeneratorGraph(nn.Module):
    """Cloud half: ``(window [B, W], window_len [B])`` -> the flat per-device tensors."""

    def __init__(self, model, parameters):
        super().__init__()
        self.model = model
        self.parameters_layout = parameters
        self.is_din = hasattr(model, "head")

    def forward(self, window, window_len):
        inputs = (_shared_user(window), window, window_len) if self.is_din else (window, window_len)
        return self.parameters_layout.flatten(self.model.generate(*inputs))


class DeviceCodeGraph(nn.Module):
    """Device side of the ``drift`` request policy: ``(item_seq [B, L], item_seq_len [B])`` -> codes ``[B, h]``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.is_din = hasattr(model, "head")

    def forward(self, item_seq, item_seq_len):
        inputs = (_shared_user(item_seq), item_seq, item_seq_len) if self.is_din else (item_seq, item_seq_len)
        return self.model.device_code(*inputs)


class NextItemDeviceGraph(nn.Module):
    """Device half for next-item backbones: ``(item_seq, item_seq_len, *parameters)`` -> scores ``[B, n_items]``,
    scored the backbone's own way (``model.scoring``)."""

    def __init__(self, model, parameters):
        super().__init__()
        self.model = model
        self.parameters_layout = parameters

    def forward(self, item_seq, item_seq_len, *flat):
        representation, _ = self.model.represent(item_seq, item_seq_len)
        user_vector = self.model.classifier(representation, self.parameters_layout.rebuild(flat))
        return self.model.scoring.full_sort(user_vector)


class DINDeviceGraph(nn.Module):
    """Device half for DIN: ``(item_seq, item_seq_len, items [B, C], *parameters)`` -> click probabilities
    ``[B, C]``, each candidate scored by DIN's attention and the device's own prediction MLP."""

    def __init__(self, model, parameters):
        super().__init__()
        self.model = model
        self.parameters_layout = parameters

    def forward(self, item_seq, item_seq_len, items, *flat):
        n_devices, n_candidates = items.shape
        rows = items.reshape(-1)
        _, mlp_input = self.model.tap(
            _shared_user(rows),
            item_seq.unsqueeze(1).expand(-1, n_candidates, -1).reshape(rows.shape[0], -1),
            item_seq_len.unsqueeze(1).expand(-1, n_candidates).reshape(-1),
            rows,
        )
        logits = self.model.head(mlp_input.view(n_devices, n_candidates, -1), self.parameters_layout.rebuild(flat))
        return torch.sigmoid(logits)
