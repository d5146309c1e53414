"""Train + evaluate through the runner, the CLI and the trainer, on tiny synthetic data and on ml-100k."""

import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import assert_consistent_metrics, build_pipeline
from recbole.utils import init_seed

from recbole_duet import run_recbole_duet
from recbole_duet.training.checkpoint import load_checkpoint
from recbole_duet.training.trainer import get_trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_KEYS = {"best_valid_score", "valid_score_bigger", "best_valid_result", "test_result"}


def assert_ranking_result(result):
    assert set(result) == RESULT_KEYS
    for metrics in (result["best_valid_result"], result["test_result"]):
        assert {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"} <= set(metrics)
        assert_consistent_metrics(metrics, one_target_per_user=True)  # leave-one-out: one target per user


@pytest.mark.parametrize(
    "overrides",
    [
        {"backbone": "SASRec"},
        {"backbone": "GRU4Rec"},
        {"backbone": "SASRec", "loss_type": "BPR", "stabilizer": False, "generator_rank": 0},
        {"backbone": "GRU4Rec", "duet_inference": "global", "duet_layers": 1, "duet_activation": "relu"},
    ],
    ids=["sasrec", "gru4rec", "sasrec-bpr-full-nostab", "gru4rec-global"],
)
def test_duet_trains_and_tests_through_the_runner(tiny_config_dict, overrides):
    result = run_recbole_duet(model="DUET", dataset="tiny", config_dict={**tiny_config_dict, **overrides})
    assert_ranking_result(result)
    assert result["best_valid_score"] == result["best_valid_result"]["mrr@10"]


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "NARM"])
def test_plain_recbole_models_run_through_the_same_runner(tiny_config_dict, model):
    assert_ranking_result(run_recbole_duet(model=model, dataset="tiny", config_dict=tiny_config_dict))


@pytest.mark.parametrize(
    "settings, backbone",
    [("tiny_config_dict", "SASRec"), ("tiny_config_dict", "GRU4Rec"), ("din_config_dict", "DIN")],
)
def test_checkpoint_round_trip_reproduces_the_scores(request, settings, backbone):
    config_dict = {**request.getfixturevalue(settings), "backbone": backbone, "epochs": 2}
    config, (train_data, valid_data, test_data), model = build_pipeline(config_dict)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    init_seed(1, True)  # sampled (uni100) evaluation draws its negatives anew on every pass
    tested = trainer.evaluate(test_data, load_best_model=True)
    batch = next(iter(train_data))
    model.eval()
    with torch.no_grad():
        expected_scores = model.full_sort_predict(batch)

    raw = torch.load(trainer.saved_model_file, weights_only=True)
    assert raw["format"] == "recbole-duet-checkpoint-v1" and '"model": "DUET"' in raw["config"]

    _, _, fresh = build_pipeline({**config_dict, "seed": 99})
    fresh.load_state_dict(load_checkpoint(trainer.saved_model_file)["state_dict"])
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.full_sort_predict(batch), expected_scores, atol=0, rtol=0)
    fresh_trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, fresh)
    init_seed(1, True)
    assert fresh_trainer.evaluate(test_data, load_best_model=True, model_file=trainer.saved_model_file) == tested


def test_resume_from_checkpoint_continues_after_the_saved_epoch(tiny_config_dict):
    config, (train_data, valid_data, _), model = build_pipeline(tiny_config_dict)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    resumed = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    resumed.resume_checkpoint(trainer.saved_model_file)
    assert resumed.start_epoch == 1 and resumed.best_valid_score == pytest.approx(trainer.best_valid_score)


def run_cli(args, cwd, script=None):
    command = [sys.executable, script] if script else [sys.executable, "-c", "from recbole_duet.cli import main; main()"]
    return subprocess.run(command + args, cwd=cwd, capture_output=True, text=True, timeout=600)


def write_config_file(path, config_dict):
    with open(path, "w", encoding="utf-8") as file:
        yaml.safe_dump(config_dict, file)
    return str(path)


def test_runner_script_with_config_files_and_overrides(tiny_config_dict, run_dir):
    config_file = write_config_file(run_dir / "tiny.yaml", {**tiny_config_dict, "state": "INFO"})
    args = ["--model=DUET", "--dataset=tiny", "--config_files", config_file, "--backbone=GRU4Rec"]
    completed = run_cli(args, cwd=run_dir, script=os.path.join(REPO, "run_recbole_duet.py"))
    assert completed.returncode == 0, completed.stderr
    log = completed.stdout + completed.stderr
    assert "backbone = GRU4Rec" in log and "test result" in log and "best valid" in log


def test_installed_cli_works_from_any_directory_and_reports_bad_keys_cleanly(tiny_config_dict, run_dir):
    config_file = write_config_file(run_dir / "tiny.yaml", tiny_config_dict)
    completed = run_cli(["-d", "tiny", "--config_files", config_file, "--backbone=Foo"], cwd=run_dir)
    assert completed.returncode == 1
    assert "Invalid value 'Foo' for config key 'backbone'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_missing_dataset_fails_at_once_without_traceback(run_dir):
    completed = run_cli(["--dataset=not-here", f"--data_path={run_dir}"], cwd=run_dir)
    assert completed.returncode == 1
    assert os.path.join(str(run_dir), "not-here", "not-here.inter") in completed.stderr
    assert "Traceback" not in completed.stderr


def test_ml_100k_smoke_run_with_tiny_dimensions(tiny_config_dict):
    config_dict = {key: value for key, value in tiny_config_dict.items() if key not in ("data_path", "load_col")}
    config_dict.update({"MAX_ITEM_LIST_LENGTH": 5, "train_batch_size": 4096, "eval_batch_size": 4096})
    result = run_recbole_duet(model="DUET", dataset="ml-100k", config_dict=config_dict)
    assert_ranking_result(result)
    assert result["test_result"]["recall@10"] > 0.01  # well above random (10 / 1682 items)


def write_successor_dataset(root, n_users=120, n_items=30):
    """Every user walks the items in order from a random start (item i is always followed by item i + 1, cyclic):
    the next item is known from the last one, while popularity is spread almost evenly over the items."""
    folder = os.path.join(root, "successor")
    os.makedirs(folder, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(n_users):
        start = (user * 7) % n_items
        lines += [f"u{user}\ti{(start + step) % n_items + 1}\t{step}" for step in range(6 + user % 5)]
    with open(os.path.join(folder, "successor.inter"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("model, overrides", [("SASRec", {}), ("DUET", {"backbone": "SASRec"}), ("DUET", {"backbone": "GRU4Rec"})])
def test_a_trained_model_beats_popularity_where_the_next_item_follows_from_the_last(tiny_config_dict, tmp_path, model, overrides):
    config_dict = {
        **tiny_config_dict, "data_path": write_successor_dataset(str(tmp_path / "data")), "epochs": 30,
        "learning_rate": 0.01, "stopping_step": 30, "metrics": ["Hit", "NDCG"], "valid_metric": "NDCG@10",
    }
    popularity = run_recbole_duet(model="Pop", dataset="successor", config_dict=config_dict)["test_result"]
    trained = run_recbole_duet(model=model, dataset="successor", config_dict={**config_dict, **overrides})["test_result"]
    assert trained["ndcg@10"] > 0.8 and trained["ndcg@10"] > 2 * popularity["ndcg@10"], (trained, popularity)
