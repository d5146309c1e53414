"""On-device fine-tuning, the baseline DUET replaces: the computations of the ``Finetune`` models
(:mod:`recbole_duet.model.finetune_model`).

Each device starts from the global (UMN) dynamic layers and takes ``finetune_steps`` SGD steps at
``finetune_lr`` on the labels it actually has: the next-item targets inside its own real-time window (the
item at window position ``p`` is the target of the history before it). The evaluation target is never
read. All devices of a batch are tuned at once: each holds its own copy of the layers, the devices' losses
are independent, so one backward pass of their sum yields every device's own gradient.

``finetune_scope: all`` is the paper's baseline: a device tunes a copy of *every* parameter (backbone, item
table and dynamic layers) the same way; that is a whole model per device, so devices are tuned one by one
(:func:`finetune_all_parameters`).
"""

import hashlib

import torch

from recbole_duet.model.layers import window_positions


def window_training_pairs(item_seq, item_seq_len, size):
    """The device's own training pairs: for each window position, the history length before it and its item.

    Returns:
        tuple: ``prefix_len`` ``[B, size]``, ``targets`` ``[B, size]`` and ``is_pair`` ``[B, size]`` (False
        on padding slots and on a history's very first item, which has no history before it).
    """
    positions, _, is_real = window_positions(item_seq_len, size, item_seq.size(1))
    return positions.clamp(min=1), item_seq.gather(1, positions), is_real & (positions >= 1)


def cut_at_prefix(item_seq, prefix_len):
    """Each history ``[n, L]`` with the items from ``prefix_len`` on replaced by padding.

    Fine-tuning pairs score a history's prefix against the item after it; cutting the rest off keeps a
    backbone that reads past ``item_seq_len`` (NextItNet, CORE, STAMP's mean) from seeing that target.
    """
    return item_seq * (torch.arange(item_seq.size(1), device=item_seq.device) < prefix_len.unsqueeze(1))


def seeded_negatives(device_inputs, n_per_device, n_items, seed):
    """``[B, n_per_device]`` item ids in ``[1, n_items)`` drawn uniformly, the same for the same device.

    Each device's draws come from its own ``torch.Generator``, seeded with a hash (BLAKE2b, stable across
    processes and platforms) of ``seed`` and the device's own inputs. So a device gets the same negatives,
    hence the same fine-tuned layers, every time it is scored, in any batch and at any position in it.

    Args:
        device_inputs (list of torch.LongTensor): ``[B, ...]`` each, what identifies a device.
        n_per_device (int): draws per device.
        n_items (int): the item table's size (id 0 is padding and never drawn).
        seed (int): a run-level seed (RecBole's ``seed``).
    """
    keys = torch.cat([tensor.reshape(len(tensor), -1) for tensor in device_inputs], dim=1).long().cpu()
    draws = torch.empty(len(keys), n_per_device, dtype=torch.long)
    for row, key in enumerate(keys.numpy()):
        digest = hashlib.blake2b(key.tobytes(), digest_size=8, key=str(seed).encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little"))
        draws[row] = torch.randint(1, n_items, (n_per_device,), generator=generator)
    return draws.to(device_inputs[0].device)


def mean_over_pairs(pair_losses, is_pair):
    """Each device's mean loss over its own pairs ``[B]`` (0 for a device without any pair)."""
    is_pair = is_pair.to(pair_losses.dtype)
    return (pair_losses * is_pair).sum(dim=1) / is_pair.sum(dim=1).clamp(min=1)


def finetune_per_device(global_layers, n_devices, device_losses, steps, lr):
    """SGD on per-device copies of ``[(weight, bias)]`` layers; returns ``[([B, out, in], [B, out])]``.

    Args:
        global_layers (list of (Tensor, Tensor)): the starting point, shared by all devices.
        n_devices (int): ``B``.
        device_losses (callable): per-device parameters -> ``[B]`` losses.
        steps (int): gradient steps.
        lr (float): SGD step size.
    """
    parameters = [
        tuple(tensor.detach().expand(n_devices, *tensor.shape).clone() for tensor in layer) for layer in global_layers
    ]
    with torch.enable_grad():
        for _ in range(steps):
            flat = [tensor.requires_grad_() for layer in parameters for tensor in layer]
            gradients = iter(torch.autograd.grad(device_losses(parameters).sum(), flat))
            parameters = [tuple((tensor - lr * next(gradients)).detach() for tensor in layer) for layer in parameters]
    return parameters


def finetune_all_parameters(parameters, loss, steps, lr):
    """SGD on a detached copy of ``parameters`` (a name -> tensor dict); ``loss(parameters)`` gives a scalar.

    Returns:
        dict: the tuned copies; a parameter the loss does not reach keeps its value.
    """
    parameters = {name: tensor.detach().clone() for name, tensor in parameters.items()}
    with torch.enable_grad():
        for _ in range(steps):
            names = list(parameters)
            values = [parameters[name].requires_grad_() for name in names]
            gradients = torch.autograd.grad(loss(parameters), values, allow_unused=True)
            parameters = {
                name: (value if gradient is None else value - lr * gradient).detach()
                for name, value, gradient in zip(names, values, gradients)
            }
    return parameters
