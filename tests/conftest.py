"""Shared fixtures: tiny synthetic atomic datasets written per test, and tiny model configs."""

import os
import random
import sys
import tempfile

import pytest
import torch

TINY_MODEL_CONFIG = {
    # SASRec
    "n_layers": 1,
    "n_heads": 1,
    "hidden_size": 16,
    "inner_size": 32,
    # GRU4Rec
    "embedding_size": 16,
    # DUET
    "generator_hidden_size": 8,
    "generator_rank": 4,
    "realtime_window": 4,
}


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repo_on_path(*first):
    """The environment of a ``python -m benchmarks.<script>`` subprocess started outside the repository root."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, first), REPO])}


def write_atomic_dataset(root, name="tiny", n_users=30, n_items=40, min_len=6, max_len=14, seed=0, item_file=False):
    """Write ``<root>/<name>/<name>.inter`` with per-user drifting interests; return ``root``.

    Each user's items are drawn from a window of item ids that slides with time, so recent items predict the
    next ones better than old ones (the situation DUET is built for). ``item_file`` adds ``<name>.item``
    with a ``category`` token feature (for DIN).
    """
    rng = random.Random(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(1, n_users + 1):
        start = rng.randrange(1, n_items)
        for step in range(rng.randint(min_len, max_len)):
            item = (start + step + rng.randrange(3)) % n_items + 1
            lines.append(f"u{user}\ti{item}\t{rng.randint(1, 5)}\t{1000 * user + step}")
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    if item_file:
        items = ["item_id:token\tcategory:token"] + [f"i{item}\tc{item % 5}" for item in range(1, n_items + 1)]
        with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as file:
            file.write("\n".join(items) + "\n")
    return root


def write_interleaved_dataset(root, name="clock", n_users=40, n_items=30, seed=1):
    """Users whose interactions are spread over one shared clock (so the boundary falls inside most histories);
    returns ``root`` and each user's (time, item) list."""
    rng = random.Random(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    histories, lines = {}, ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(n_users):
        times = sorted(rng.sample(range(10_000), rng.randint(3, 12)))
        histories[f"u{user}"] = [(t, f"i{rng.randint(1, n_items)}") for t in times]
        lines += [f"u{user}\t{item}\t{t}" for t, item in histories[f"u{user}"]]
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    return root, histories


@pytest.fixture
def tiny_data_path(tmp_path):
    return write_atomic_dataset(str(tmp_path / "data"))


@pytest.fixture
def din_config_dict(tmp_path, tiny_config_dict):
    """Tiny DIN settings on a dataset with an ``.item`` file (DIN embeds item features)."""
    return {
        **tiny_config_dict,
        "data_path": write_atomic_dataset(str(tmp_path / "din-data"), item_file=True),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "category"]},
        "embedding_size": 4,
        "mlp_hidden_size": [16, 8],
        "backbone": "DIN",
    }


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """Run in a temporary folder: RecBole writes log/, log_tensorboard/ and saved/ under the working dir."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_config_dict(tiny_data_path, run_dir):
    return {
        **TINY_MODEL_CONFIG,
        "data_path": tiny_data_path,
        "checkpoint_dir": str(run_dir / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 8,
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "show_progress": False,
        "state": "WARNING",
        "seed": 7,
    }


@pytest.fixture(autouse=True)
def _isolated_process_state(monkeypatch):
    """RecBole's Config reads --key=value pairs from sys.argv: hide pytest's own arguments from it. One torch
    thread, fixed (so the trainer does not balance threads against the machine's load, which would make a test's
    arithmetic depend on what else runs)."""
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


def assert_device_parameters_equal(alone, together, device, atol=1e-6):
    """``alone`` holds one device's per-layer ``(weight, bias)``; compare it with row ``device`` of ``together``."""
    assert len(alone) == len(together)
    for (weight, bias), (weights, biases) in zip(alone, together):
        torch.testing.assert_close(weight[0], weights[device], atol=atol, rtol=0)
        torch.testing.assert_close(bias[0], biases[device], atol=atol, rtol=0)


def build_pipeline(config_dict, model="DUET", dataset="tiny"):
    """Config, data loaders and a freshly initialised model, as ``run_recbole_duet`` builds them."""
    from recbole_duet.config import Config
    from recbole_duet.quick_start import prepare_experiment

    config = Config(model=model, dataset=dataset, config_dict=config_dict)
    _, loaders, model = prepare_experiment(config)
    return config, loaders, model


def layers_checkpoint(config_dict, dataset="tiny"):
    """The cloud model the fine-tuning baseline tunes: a DUET scored with its global layers (the benchmarks' Layers
    model) as ``config_dict`` builds it, saved, generator weights and all; returns the checkpoint's path."""
    from recbole_duet.training.trainer import get_trainer

    config, _, model = build_pipeline({**config_dict, "duet_inference": "global"}, dataset=dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    handle, path = tempfile.mkstemp(prefix="layers-", suffix=".pth", dir=config["checkpoint_dir"])
    os.close(handle)
    trainer._save_checkpoint(0, verbose=False, saved_model_file=path)
    return path


def finetune_pipeline(config_dict, dataset="tiny"):
    """Config, data loaders and a fine-tuning model (``model: Finetune``) on the cloud model ``config_dict`` builds:
    the backbone and dynamic layers a DUET of the same settings and seed starts with."""
    checkpoint = layers_checkpoint(config_dict, dataset)
    return build_pipeline({**config_dict, "cloud_checkpoint": checkpoint}, model="Finetune", dataset=dataset)


def assert_consistent_metrics(metrics, one_target_per_user=False):
    """What RecBole's metrics must satisfy whatever the model learned: each in [0, 1] (NaN fails), MRR@k <= Hit@k,
    NDCG@k <= Hit@k, Recall@k and Precision@k at most Hit@k, LogLoss positive; and with one target per user
    (leave-one-out) Recall@k equals Hit@k and Precision@k is Hit@k / k."""
    assert metrics, "no metrics"
    for name, value in metrics.items():
        assert (value > 0) if name == "logloss" else (0.0 <= value <= 1.0), (name, value)
    for name, hit in metrics.items():
        if not name.startswith("hit@"):
            continue
        k = name.split("@")[1]
        for bounded in ("mrr", "ndcg", "recall", "precision"):
            assert metrics.get(f"{bounded}@{k}", 0.0) <= hit + 1e-9, (bounded, k, metrics)
        if one_target_per_user:
            assert metrics.get(f"recall@{k}", hit) == pytest.approx(hit, abs=1e-4), metrics
            if f"precision@{k}" in metrics:
                assert metrics[f"precision@{k}"] == pytest.approx(hit / int(k), abs=1e-4), metrics
