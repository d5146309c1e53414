"""Export a trained DUET checkpoint to a bundle: ONNX generator and device graphs, manifest, item vocabulary.

The model and its dataset are rebuilt from the checkpoint's own config (RecBole's pipeline, the data files
must be readable), the weights loaded with ``weights_only=True``, and both graphs traced with torch's
TorchScript-based exporter (``dynamo=False``): it exports all three backbones in about a second and needs
no onnxscript, while the dynamo exporter needs onnxscript and ``torch.export``-compatible shapes.
Before the manifest is final, :func:`recbole_duet.deploy.verify.verify_bundle` runs the bundle through
onnxruntime against the PyTorch model on the dataset's test users.
"""

import hashlib
import json
import os
import warnings

import onnx
import torch

from recbole_duet.config import Config
from recbole_duet.deploy.graphs import (
    DeviceCodeGraph,
    DeviceParameters,
    DINDeviceGraph,
    GeneratorGraph,
    NextItemDeviceGraph,
)
from recbole_duet.device.bundle import (
    BUNDLE_FORMAT,
    CODE_FILE,
    DEVICE_FILE,
    BundleError,
    GENERATOR_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
)
from recbole_duet.errors import CheckpointError, ConfigError
from recbole_duet.quick_start import prepare_experiment
from recbole_duet.training.checkpoint import load_checkpoint

ONNX_OPSET = 17
# Keys RecBole derives while building a Config; the checkpoint stores them as strings ("ModelType.SEQUENTIAL").
DERIVED_KEYS = ("MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device", "single_spec", "local_rank", "model",
                "dataset", "valid_neg_sample_args", "test_neg_sample_args")


def model_version(state_dict):
    """16 hex digits of a SHA-256 over every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_trained_model(checkpoint_path, data_path=None):
    """The checkpoint's DUET model in evaluation mode, with its config and data loaders."""
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    saved = json.loads(checkpoint["config"])
    if saved.get("model") != "DUET":
        raise CheckpointError(
            f"Checkpoint '{checkpoint_path}' holds model '{saved.get('model')}': only DUET checkpoints export."
        )
    overrides = {key: value for key, value in saved.items() if key not in DERIVED_KEYS}
    if (overrides.get("train_neg_sample_args") or {}).get("distribution") == "none":
        overrides["train_neg_sample_args"] = None  # RecBole's expanded form of "no negatives"
    overrides.update(use_gpu=False, gpu_id="", state="ERROR", show_progress=False, duet_inference="generated")
    # The checkpoint holds every weight: the files the training started from (a cloud_first run's cloud model
    # among them) need not exist any more.
    overrides.update(cloud_checkpoint=None, backbone_checkpoint=None, freeze_backbone=False)
    # RecBole stores <data_path>/<dataset> and appends the dataset's name again when it builds a Config.
    overrides["data_path"] = data_path or os.path.dirname(os.path.normpath(saved["data_path"]))
    config = Config(model="DUET", dataset=saved["dataset"], config_dict=overrides)
    if config["generator_input"] != "window":
        raise ConfigError(
            "generator_input", config["generator_input"],
            "'window' to export: with 'backbone' the generator reads the backbone's states over the whole "
            "history, so the service would need each device's history instead of its real-time window",
        )
    if config["dynamic_side"] != "user":
        raise ConfigError(
            "dynamic_side", config["dynamic_side"],
            "'user' to export: the device graphs apply the generated layers to the user vector",
        )
    dataset, loaders, model = prepare_experiment(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model.eval()
    return config, dataset, loaders, model, model_version(checkpoint["state_dict"])


def _export_graph(module, inputs, path, input_names, output_names, dynamic_axes):
    # The exporter restores the wrapper's training flag afterwards, recursively: a fresh wrapper is in
    # training mode and would leave the model in it (dropout on) unless put in evaluation mode first.
    # Its tracer warnings (shapes read as constants, GRU initial state) are about values that are constant
    # here; whether the graphs generalise across batch sizes and histories is what verify_bundle checks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            module.eval(),
            inputs,
            path,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(path)


def export_graphs(model, config, folder):
    """Write the ONNX graphs (generator, device model, device code); return the payload layout ``[(name, shape)]`` and the window size."""
    max_history = config["MAX_ITEM_LIST_LENGTH"]
    window_size = min(config["realtime_window"], max_history)
    is_din = config["backbone"] == "DIN"
    window = torch.ones(2, window_size, dtype=torch.long)
    window_len = torch.tensor([window_size, 1])
    example_args = (torch.zeros(2, dtype=torch.long), window, window_len) if is_din else (window, window_len)
    with torch.no_grad():
        parameters = DeviceParameters(model.generate(*example_args))
        names = parameters.names
        batch = {0: "devices"}
        _export_graph(
            GeneratorGraph(model, parameters),
            (window, window_len),
            os.path.join(folder, GENERATOR_FILE),
            ["window", "window_len"],
            names,
            {name: batch for name in ["window", "window_len", *names]},
        )
        example = parameters.flatten(model.generate(*example_args))
        history = (torch.ones(2, max_history, dtype=torch.long), window_len)
        if is_din:
            graph = DINDeviceGraph(model, parameters)
            inputs, input_names = (*history, torch.ones(2, 3, dtype=torch.long), *example), ["items"]
            dynamic = {"items": {0: "devices", 1: "candidates"}, "scores": {0: "devices", 1: "candidates"}}
        else:
            graph = NextItemDeviceGraph(model, parameters)
            inputs, input_names, dynamic = (*history, *example), [], {"scores": batch}
        input_names = ["item_seq", "item_seq_len", *input_names, *names]
        dynamic.update({name: batch for name in input_names if name not in dynamic})
        _export_graph(graph, inputs, os.path.join(folder, DEVICE_FILE), input_names, ["scores"], dynamic)
    export_code_graph(model, max_history, os.path.join(folder, CODE_FILE))
    return parameters.layout, window_size, max_history


def export_code_graph(model, max_history, path):
    """Write the device-code graph (a history -> the generator's code of its window) to ``path``."""
    history = (torch.ones(2, max_history, dtype=torch.long), torch.tensor([max_history, 1]))
    axes = {name: {0: "devices"} for name in ("item_seq", "item_seq_len", "code")}
    with torch.no_grad():
        _export_graph(DeviceCodeGraph(model), history, path, ["item_seq", "item_seq_len"], ["code"], axes)


def export_bundle(checkpoint_path, folder, data_path=None, verify_users=1000):
    """Export ``checkpoint_path`` to the bundle folder ``folder``; return the manifest.

    Args:
        data_path (str, optional): where the dataset's atomic files are, if not where training read them.
        verify_users (int): test users to check the bundle on against PyTorch (0: no check).
    """
    from recbole_duet.deploy.verify import verify_bundle

    config, dataset, loaders, model, version = load_trained_model(checkpoint_path, data_path)
    os.makedirs(folder, exist_ok=True)
    manifest_path = os.path.join(folder, MANIFEST_FILE)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # a folder without a manifest is no bundle until this export completes
    layout, window_size, max_history = export_graphs(model, config, folder)
    tokens = dataset.field2id_token[dataset.iid_field].tolist()
    with open(os.path.join(folder, ITEMS_FILE), "w", encoding="utf-8") as file:
        json.dump(tokens, file)
    manifest = {
        "format": BUNDLE_FORMAT,
        "model_version": version,
        "backbone": config["backbone"],
        "dataset": config["dataset"],
        "checkpoint": os.path.basename(checkpoint_path),
        "n_items": len(tokens),
        "window_size": window_size,
        "max_history": max_history,
        "generator_rank": config["generator_rank"],
        "stabilizer": config["stabilizer"],
        "dtype": "float32",
        "layer_shapes": [list(shape) for shape in (model.head if config["backbone"] == "DIN" else model.classifier).layer_shapes],
        "payload": [{"name": name, "shape": list(shape)} for name, shape in layout],
    }
    _write_manifest(manifest_path, manifest)
    if verify_users > 0:
        try:
            manifest["verification"] = verify_bundle(folder, model, loaders[2], verify_users)
        except BundleError:
            os.remove(manifest_path)
            raise
        _write_manifest(manifest_path, manifest)
    return manifest


def _write_manifest(path, manifest):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(manifest, file, indent=2)
