"""Rows of a batch grouped by the device they belong to, so that each device is personalised once.

RecBole's pointwise evaluation (e.g. DIN's ``uni100``: each test target and its 100 sampled negatives) calls
``predict`` with one row per (device, candidate item): the device inputs of a user repeat on every one of
its candidate rows. Personalising per row would run the generator (or fine-tuning) once per candidate; with
:class:`DeviceRows` the distinct devices are personalised once each, and every row is scored with its own
device's layers. A device is the exact tuple of its inputs, so grouping never mixes two devices and a
device's result does not depend on which other rows share its batch.

The same grouping serves every sequential model under sampled evaluation: a test case is 101 rows that repeat its
history, and ``predict`` encodes that history on each of them, though the user vector does not depend on the
candidate. :func:`deduplicate_forward_rows` makes a built model's ``forward``, in eval mode with no gradient kept,
run on the distinct rows of its integer inputs and hand each row its own row's output: the same function, row by
row, since in eval mode (no dropout, batch norm on running statistics) no row of a forward reads another. Rows
that are all distinct (full ranking, DIN's candidate-dependent forward) pass through untouched, as do training,
tracing and ONNX export.
"""

import types

import torch


class DeviceRows:
    """Group the ``N`` rows of a batch by their device inputs (any number of ``[N, ...]`` integer tensors).

    Attributes:
        devices (tuple of torch.Tensor): the device inputs of the ``U`` distinct devices, one row each.
        device (torch.LongTensor): ``[N]`` the device of each row (an index into ``devices``).
        slot (torch.LongTensor): ``[N]`` each row's position among its device's rows (in batch order).
    """

    def __init__(self, *device_inputs):
        n_rows = len(device_inputs[0])
        keys = torch.cat([tensor.reshape(n_rows, -1) for tensor in device_inputs], dim=1)
        _, self.device, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
        rows = torch.arange(n_rows, device=keys.device)
        order = torch.argsort(self.device, stable=True)  # rows grouped by device, batch order inside a group
        first_of_group = torch.cumsum(counts, dim=0) - counts
        self.slot = torch.empty_like(rows)
        self.slot[order] = rows - first_of_group[self.device[order]]
        self.rows_per_device = int(counts.max())
        self.devices = tuple(tensor[order[first_of_group]] for tensor in device_inputs)

    def group(self, rows):
        """``[N, ...]`` per-row values -> ``[U, rows_per_device, ...]``, zero-padded where a device has fewer."""
        grouped = rows.new_zeros(len(self.devices[0]), self.rows_per_device, *rows.shape[1:])
        grouped[self.device, self.slot] = rows
        return grouped

    def ungroup(self, grouped):
        """The inverse of :meth:`group`: ``[U, rows_per_device, ...]`` -> ``[N, ...]`` in batch order."""
        return grouped[self.device, self.slot]


def _are_device_rows(inputs, options):
    """Whether ``inputs`` are integer tensors of one length (ids and lengths), the rows worth grouping, and the
    keyword ``options`` (S3Rec's ``bidirectional=False``) hold no tensor, so they apply to every row alike."""
    return (
        bool(inputs)
        and all(isinstance(x, torch.Tensor) and not x.is_floating_point() and len(x) == len(inputs[0]) for x in inputs)
        and not any(isinstance(value, torch.Tensor) for value in options.values())
    )


def _forward_once_per_row(self, *inputs, **options):
    forward = type(self).forward
    evaluating = not (self.training or torch.is_grad_enabled() or torch.jit.is_tracing())
    if not evaluating or torch.onnx.is_in_onnx_export() or not _are_device_rows(inputs, options):
        return forward(self, *inputs, **options)
    rows = DeviceRows(*inputs)
    if len(rows.devices[0]) == len(inputs[0]):
        return forward(self, *inputs, **options)
    output = forward(self, *rows.devices, **options)
    if not isinstance(output, torch.Tensor):
        return forward(self, *inputs, **options)
    return output[rows.device]


def deduplicate_forward_rows(model):
    """Make ``model.forward`` run once per distinct row of its inputs when no gradient is kept (see above).

    Bound on the instance, so ``copy.deepcopy`` rebinds it to the copy and the class keeps RecBole's forward;
    ``del model.forward`` puts that back. Returns ``model``.
    """
    model.forward = types.MethodType(_forward_once_per_row, model)
    return model
