"""Start DUET from a model already trained on the cloud: its backbone alone (``backbone_checkpoint``) or its
whole cloud model, the backbone with its global layers (``cloud_checkpoint``).

In the paper the static layers are the cloud model, trained before the generator learns to personalise it; a
RecBole user likewise has a trained SASRec or GRU4Rec (``run_recbole_duet.py --model=SASRec`` saves one under
``saved/``). Loaded into DUET's backbone and kept fixed (``freeze_backbone``), it leaves only the dynamic layers,
the generator and the adapter to learn, and the backbone's backward pass is skipped. With a checkpoint DUET's
dynamic layers start as the identity and its generated updates at zero (:class:`recbole_duet.model.duet.DUET`), so
training starts from exactly the backbone's scores.

A cloud checkpoint is a DUET trained with ``duet_inference: global`` (the Universal Meta Network alone: the
backbone and its dynamic layers as ordinary global layers, the benchmarks' Layers model). Its backbone and global
layers are loaded and kept fixed, so the generator learns an update on top of a cloud model whose training (and
early stopping) was its own, as the paper's flow has it: (1) train the UMN, (2) generate from real-time windows.
The fine-tuning baseline (``model: Finetune``) starts from such a checkpoint too: it is the model each device tunes.
On DIN the cloud model is DIN itself (its prediction MLP is the global layers), so a trained RecBole DIN is one too.
"""

import json

import torch.distributed as dist

from recbole_duet.errors import CheckpointError
from recbole_duet.model.backbones import function_settings
from recbole_duet.training.checkpoint import load_checkpoint
from recbole_duet.training.distributed import from_rank_zero

# The models whose checkpoints hold a cloud model, under the same names (recbole_duet.model.cloud).
CLOUD_MODELS = ["DUET", "Finetune"]


def _read_checkpoint(path, key, model_names, dataset_name):
    """The checkpoint at ``path`` and a phrase naming it, after checking it holds one of ``model_names`` on
    ``dataset_name``.

    In a distributed run rank 0 reads it and hands it to the other ranks, which may sit on machines without the
    file (a ``training_order: cloud_first`` run's cloud model is written by rank 0 only).
    """
    if dist.is_initialized():
        checkpoint = from_rank_zero(lambda: load_checkpoint(path, map_location="cpu"), CheckpointError)
    else:
        checkpoint = load_checkpoint(path, map_location="cpu")
    trained = json.loads(checkpoint["config"])
    where = f"Checkpoint file '{path}' ({key})"
    if str(trained.get("model", "")).lower() not in [name.lower() for name in model_names]:
        needed = " or ".join(repr(name) for name in model_names)
        raise CheckpointError(f"{where} holds a {trained.get('model')!r} model, not the {needed} {key} needs.")
    if trained.get("dataset") != dataset_name:
        raise CheckpointError(f"{where} was trained on dataset {trained.get('dataset')!r}, not {dataset_name!r}.")
    return checkpoint, trained, where


def _check_settings(trained, config, keys, where):
    """Refuse a checkpoint trained under another value of any of ``keys`` (settings that keep every shape but
    change the function the weights compute); a key its config lacks cannot be checked."""
    for key in keys:
        current = json.loads(json.dumps(config[key], default=str))  # as the checkpoint's config was written
        if key in trained and trained[key] != current:
            raise CheckpointError(f"{where} was trained with {key} {trained[key]!r}, not {current!r}.")


def _load_into(module, state_dict, where, what):
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as error:
        first_problem = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise CheckpointError(f"{where} does not fit this {what}: {first_problem}") from error


def load_backbone_checkpoint(backbone, path, config):
    """Load ``path`` (a checkpoint of ``config``'s backbone trained on its dataset) into ``backbone``.

    Raises:
        CheckpointError: naming the file, when it holds another model or dataset, was trained under another
            value of one of the backbone's settings (naming it), or holds parameters of other shapes (another
            ``MAX_ITEM_LIST_LENGTH`` or item count).
    """
    backbone_name = config["backbone"]
    checkpoint, trained, where = _read_checkpoint(path, "backbone_checkpoint", [backbone_name], config["dataset"])
    _check_settings(trained, config, function_settings(backbone_name), where)
    _load_into(backbone, checkpoint["state_dict"], where, "backbone")


def load_cloud_checkpoint(cloud_modules, path, config, accepts_backbone=False):
    """Load the cloud model of ``path`` (a DUET, or a Finetune holding the same cloud model, on ``config``'s dataset)
    into ``cloud_modules`` (``{"backbone": ..., "classifier": ...}``, named as in the checkpoint's state dict) and
    keep them fixed. What else the checkpoint holds (a DUET's generator and adapter) is not the cloud model's.
    With ``accepts_backbone`` (the cloud model is the backbone alone: DIN, whose MLP is the global layers), a
    checkpoint of the backbone trained on its own is that cloud model too.

    Raises:
        CheckpointError: naming the file, when it holds another model or dataset, was trained with another
            backbone, activation of the dynamic layers or value of one of the backbone's settings (naming the
            key: same shapes, another function), or holds parameters of other shapes (another item count or
            number of dynamic layers).
    """
    backbone_name = config["backbone"]
    models = CLOUD_MODELS + ([backbone_name] if accepts_backbone else [])
    checkpoint, trained, where = _read_checkpoint(path, "cloud_checkpoint", models, config["dataset"])
    _check_settings(trained, config, ("backbone", "duet_activation") + function_settings(backbone_name), where)
    state_dict = checkpoint["state_dict"]
    if str(trained["model"]).lower() == backbone_name.lower():  # the backbone's own training, named as its module
        state_dict = {f"backbone.{key}": value for key, value in state_dict.items()}
    for name, module in cloud_modules.items():
        prefix = name + "."
        state = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
        _load_into(module, state, where, name)
        module.requires_grad_(False)
