"""Training-side behaviours pinned by tests that fail when they break (issue 12): checkpoint writes that fail
at the rename or are killed half-way, resuming into a fresh model, the runner's metrics on a dataset whose
ranking is known, and DUET(DIN) trained by two processes (batch norm in a distributed run)."""

import glob
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import TINY_MODEL_CONFIG, build_pipeline
from test_distributed import _run_experiment_as_rank, assert_ranks_end_equal_and_trained, distributed_keys, spawn

from recbole_duet import run_recbole_duet
from recbole_duet.errors import CheckpointError
from recbole_duet.model import DUET
from recbole_duet.training.checkpoint import load_checkpoint, save_checkpoint
from recbole_duet.training.trainer import get_trainer

pytestmark = pytest.mark.kernel_sensitive

# --- Checkpoints -----------------------------------------------------------------------------------------


def test_a_failed_rename_keeps_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = str(tmp_path / "model.pth")
    save_checkpoint({"epoch": 1}, path)
    renames = []

    def failing_replace(source, target):
        renames.append((source, target))
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["model.pth"]
    ((source, target),) = renames
    assert target == path and source != path and os.path.dirname(source) == str(tmp_path)  # renamed in place


KILLED_WRITER = """
import os, sys, torch
from recbole_duet.training.checkpoint import save_checkpoint

def killed_while_writing(obj, file, *args, **kwargs):
    file.write(b"half a checkpoint")
    file.flush()
    os._exit(9)  # like SIGKILL: no exception handler, no clean-up runs

torch.save = killed_while_writing
save_checkpoint({"epoch": 2}, sys.argv[1])
"""


def test_a_killed_writers_temporary_file_is_never_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "DUET-run.pth"
    save_checkpoint({"epoch": 1}, str(path))
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    (stray,) = [name for name in os.listdir(tmp_path) if name != path.name]  # the killed writer's leftover
    assert glob.glob(str(tmp_path / "*.pth")) == [str(path)]  # hidden from anything listing checkpoints
    assert load_checkpoint(str(path))["epoch"] == 1
    with pytest.raises(CheckpointError, match=stray):
        load_checkpoint(str(tmp_path / stray))
    save_checkpoint({"epoch": 3}, str(path))  # the next writer is not confused by it either
    assert load_checkpoint(str(path))["epoch"] == 3


# --- Resume ----------------------------------------------------------------------------------------------


def test_resuming_into_a_fresh_model_restores_its_weights_and_optimizer_state(tiny_config_dict):
    config, (train_data, valid_data, _), model = build_pipeline({**tiny_config_dict, "epochs": 2})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    saved = load_checkpoint(trainer.saved_model_file)

    _, _, fresh = build_pipeline({**tiny_config_dict, "seed": 99})
    assert not all(torch.equal(value, saved["state_dict"][name]) for name, value in fresh.state_dict().items())
    resumed = get_trainer(config["MODEL_TYPE"], config["model"])(config, fresh)
    resumed.resume_checkpoint(trainer.saved_model_file)

    for name, value in fresh.state_dict().items():
        assert torch.equal(value, saved["state_dict"][name]), f"{name} was not restored"
    restored = resumed.optimizer.state_dict()
    assert restored["state"].keys() == saved["optimizer"]["state"].keys() and len(restored["state"]) > 10
    for index, moments in saved["optimizer"]["state"].items():
        for key, value in moments.items():
            assert torch.equal(restored["state"][index][key], value), f"optimizer {key} of parameter {index}"
    assert resumed.optimizer.param_groups[0]["params"][0] is next(fresh.parameters())  # it steps the fresh model
    assert (resumed.start_epoch, resumed.cur_step) == (saved["epoch"] + 1, saved["cur_step"])
    assert resumed.best_valid_score == saved["best_valid_score"]


# --- Metrics through the runner ----------------------------------------------------------------------------

# Every user walks up the item ids one at a time, then jumps ``step`` ids for its last (test) item. The scorer
# below expects "last history item + 1" and ranks the others by distance, the higher side first, so a valid
# target is always ranked 1 and a test target ``step`` ids on is ranked 2 * (step - 1) (1 for a step of 1).
N_ITEMS = 40
TEST_STEPS = {"u0": 1, "u1": 1, "u2": 2, "u3": 3, "u4": 5, "u5": 7}


def write_ranked_dataset(root, name="ranked"):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    sequences = {"u0": list(range(1, N_ITEMS + 1))}  # every item appears
    for index, (user, step) in enumerate(list(TEST_STEPS.items())[1:]):
        walk = list(range(8 + 4 * index, 14 + 4 * index))
        sequences[user] = walk + [walk[-1] + step]
    for user, items in sequences.items():
        lines += [f"{user}\ti{item}\t{time}" for time, item in enumerate(items)]
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    return root


def expected_metrics(ranks, cutoffs=(5, 10)):
    """Hit, MRR, NDCG, Recall and Precision @k of one target per user at the given ranks, averaged over users."""
    metrics = {}
    for k in cutoffs:
        hits = [rank <= k for rank in ranks]
        metrics[f"hit@{k}"] = metrics[f"recall@{k}"] = sum(hits) / len(ranks)
        metrics[f"mrr@{k}"] = sum(hit / rank for hit, rank in zip(hits, ranks)) / len(ranks)
        metrics[f"ndcg@{k}"] = sum(hit / math.log2(rank + 1) for hit, rank in zip(hits, ranks)) / len(ranks)
        metrics[f"precision@{k}"] = sum(hits) / len(ranks) / k
    return metrics


def score_by_distance_to_next_id(self, interaction):
    """``[B, n_items]``: minus the distance of each item id to the last history item's id + 1, the higher side
    scored a quarter above the lower one (no ties)."""
    item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
    last = self.token_numbers[item_seq.gather(1, (item_seq_len - 1).unsqueeze(1))]
    distance = (self.token_numbers.unsqueeze(0) - (last + 1)).float()
    return -distance.abs() + 0.25 * (distance > 0).float()


def test_runner_metrics_equal_hand_computed_values_on_a_known_ranking(tmp_path, run_dir, monkeypatch):
    build = DUET.__init__

    def build_and_keep_token_numbers(self, config, dataset):
        build(self, config, dataset)
        tokens = dataset.field2id_token[dataset.iid_field]
        self.token_numbers = torch.tensor([0] + [int(token[1:]) for token in tokens[1:]])

    monkeypatch.setattr(DUET, "__init__", build_and_keep_token_numbers)
    monkeypatch.setattr(DUET, "full_sort_predict", score_by_distance_to_next_id)
    config_dict = {
        **TINY_MODEL_CONFIG,
        "data_path": write_ranked_dataset(str(tmp_path / "data")),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "checkpoint_dir": str(run_dir / "saved"),
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "MRR", "NDCG", "Recall", "Precision"],
        "topk": [5, 10],
        "valid_metric": "MRR@10",
        "epochs": 1,
        "show_progress": False,
        "state": "WARNING",
    }
    result = run_recbole_duet(model="DUET", dataset="ranked", config_dict=config_dict)
    ranks = [1 if step == 1 else 2 * (step - 1) for step in TEST_STEPS.values()]
    assert ranks == [1, 1, 2, 4, 8, 12]
    for name, (measured, expected) in {
        "valid": (result["best_valid_result"], expected_metrics([1] * len(TEST_STEPS))),
        "test": (result["test_result"], expected_metrics(ranks)),
    }.items():
        assert set(measured) == set(expected)
        for metric, value in expected.items():
            assert measured[metric] == pytest.approx(value, abs=1e-4), f"{name} {metric}"
    assert result["best_valid_score"] == 1.0


# --- DUET(DIN) with two processes ---------------------------------------------------------------------------


def test_duet_din_trained_by_two_processes_ends_with_one_model_batch_norm_statistics_included(din_config_dict, run_dir):
    """Each process normalises its own shard of every batch, so the ranks' running statistics drift apart
    while their parameters (averaged gradients) stay equal; the run must end on rank 0's best checkpoint on
    every rank, statistics included."""
    spawn(_run_experiment_as_rank, {**din_config_dict, **distributed_keys()}, str(run_dir))
    initial = build_pipeline(din_config_dict)[2].state_dict()
    rank0 = assert_ranks_end_equal_and_trained(run_dir, initial)  # batch-norm statistics included
    statistics = [name for name in rank0 if name.endswith(("running_mean", "running_var"))]
    assert statistics and all(not torch.equal(rank0[name], initial[name]) for name in statistics)
    with open(run_dir / "rank0.json", encoding="utf-8") as file:
        metrics = json.load(file)["test_result"]
    assert set(metrics) == {"auc", "logloss"} and 0.0 <= metrics["auc"] <= 1.0
