"""Exported bundles for the deployment tests: tiny DUET models whose weights are perturbed well away from
their initialisation, so that the generated (per-device) part changes the scores and an export that dropped
or mixed up any of it could not pass."""

import os
import sys

import pytest
import torch
from conftest import TINY_MODEL_CONFIG, build_pipeline, write_atomic_dataset

from recbole_duet.training.checkpoint import config_to_json, save_checkpoint

WEIGHT_NOISE = 0.3


def tiny_settings(root, backbone, **overrides):
    settings = {
        **TINY_MODEL_CONFIG,
        "backbone": backbone,
        "data_path": write_atomic_dataset(os.path.join(root, "data"), item_file=backbone == "DIN"),
        "checkpoint_dir": os.path.join(root, "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 8,
        "epochs": 1,
        "show_progress": False,
        "state": "ERROR",
        "seed": 7,
    }
    if backbone == "DIN":
        settings.update(
            load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "category"]},
            embedding_size=4,
            mlp_hidden_size=[16, 8],
        )
    return {**settings, **overrides}


def perturbed_checkpoint(root, backbone, **overrides):
    """Write a DUET checkpoint (the trainer's format) with noisy weights; return ``(path, model, loaders)``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["pytest"])
        patch.chdir(root)
        config, loaders, model = build_pipeline(tiny_settings(root, backbone, **overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * WEIGHT_NOISE)
    model.eval()
    path = os.path.join(root, "DUET-perturbed.pth")
    save_checkpoint({"config": config_to_json(config), "state_dict": model.state_dict()}, path)
    return path, model, loaders


def exported_bundle(root, backbone, verify_users=1000, **overrides):
    """Export a perturbed tiny model; return ``(bundle folder, manifest, model, loaders)``."""
    from recbole_duet.deploy.export import export_bundle

    checkpoint, model, loaders = perturbed_checkpoint(root, backbone, **overrides)
    folder = os.path.join(root, "bundle")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["pytest"])
        patch.chdir(root)
        manifest = export_bundle(checkpoint, folder, verify_users=verify_users)
    return folder, manifest, model, loaders
