"""torch.distributed for RecBole runs on CPUs as well as GPUs.

RecBole 1.2.1 starts every distributed run with the NCCL backend on ``cuda:<local_rank>`` and wraps the model
for GPUs only (``SyncBatchNorm`` conversion, ``DistributedDataParallel(device_ids=[local_rank])``), so a
CPU-only machine cannot train with more than one process. Here the backend and the wrapping follow the run's
device: gloo on CPU, NCCL on ``cuda:<local_rank>``.

A run is laid out as RecBole lays it out: ``world_size`` processes over one or more machines, each machine
starting ``nproc`` of them numbered from its ``offset``, all meeting at ``tcp://ip:port``.
"""

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def global_rank(config):
    """This process's rank in the whole run: its ``local_rank`` on its machine plus the machine's ``offset``."""
    return config["local_rank"] + config["offset"]


def is_rank_zero(config):
    """Whether this process writes checkpoints and logs: the only one of a single-process run, or rank 0."""
    return config["single_spec"] or global_rank(config) == 0


def init_process_group(config, use_cuda):
    """Join the run's process group (NCCL on a GPU, gloo on CPU) and return this process's device."""
    local_rank = config["local_rank"]
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        rank=global_rank(config),
        world_size=config["world_size"],
        init_method=f"tcp://{config['ip']}:{config['port']}",
    )
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def distributed_model(model, config):
    """``(model, DDP wrapper)`` for the run's device; batch norm is synchronised across GPUs only, the one
    case where ``SyncBatchNorm`` runs (it keeps the modules' parameter objects, so an optimizer built on the
    model still holds them)."""
    if config["device"].type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, DistributedDataParallel(model, device_ids=[config["local_rank"]])
    return model, DistributedDataParallel(model)


def from_rank_zero(load, error_type):
    """Run ``load()`` on rank 0 only and return its value on every rank.

    An ``error_type`` raised by ``load`` is re-raised on every rank, so no rank waits forever for rank 0.
    """
    payload = [None]
    if dist.get_rank() == 0:
        try:
            payload[0] = load()
        except error_type as error:
            payload[0] = error
    dist.broadcast_object_list(payload, src=0)
    if isinstance(payload[0], error_type):
        raise payload[0]
    return payload[0]
