"""Rows of a batch grouped by the device they belong to, so that each device is personalised once.

RecBole's pointwise evaluation (e.g. DIN's ``uni100``: each test target and its 100 sampled negatives) calls
``predict`` with one row per (device, candidate item): the device inputs of a user repeat on every one of
its candidate rows. Personalising per row would run the generator (or fine-tuning) once per candidate; with
:class:`DeviceRows` the distinct devices are personalised once each, and every row is scored with its own
device's layers. A device is the exact tuple of its inputs, so grouping never mixes two devices and a
device's result does not depend on which other rows share its batch.
"""

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
