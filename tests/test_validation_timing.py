"""The validation timer compares each setting with the first: the speed-up, the largest score difference and
whether the metrics match, all on the same seeded draws."""

import argparse

import numpy as np
import pytest
import torch

from benchmarks import validation_timing


class StubModel:
    offset = 0.0

    def predict(self, interaction):
        return interaction + self.offset


class StubTrainer:
    """A validation takes 1 s of a fake clock, 3 s once the model is shifted; it draws from numpy as RecBole's
    sampler does, and its metric moves with the shift."""

    def __init__(self):
        self.model = StubModel()
        self.clock = 0.0
        self.draws = []

    def evaluate(self, valid_data, load_best_model, show_progress):
        self.clock += 3.0 if self.model.offset else 1.0
        self.draws.append(np.random.randint(1 << 30))
        return {"ndcg@10": 0.5 + self.model.offset}


def test_each_setting_is_compared_with_the_first(monkeypatch):
    trainer = StubTrainer()
    monkeypatch.setattr(validation_timing.time, "perf_counter", lambda: trainer.clock)
    batches = [(torch.tensor([1.0, 2.0]),), (torch.tensor([3.0]),)]
    settings = {
        "reference": lambda: setattr(trainer.model, "offset", 0.0),
        "shifted": lambda: setattr(trainer.model, "offset", 0.25),
    }
    rows = validation_timing.time_settings(trainer, batches, settings, rounds=3)
    assert list(rows) == ["reference", "shifted"]
    assert rows["reference"]["seconds"] == [1.0] * 3 and rows["shifted"]["seconds"] == [3.0] * 3
    assert rows["shifted"]["speedup"] == pytest.approx(1 / 3)
    assert rows["reference"]["same_metrics"] and rows["reference"]["max_score_difference"] == 0
    assert not rows["shifted"]["same_metrics"] and rows["shifted"]["max_score_difference"] == 0.25
    assert len(set(trainer.draws)) == 1  # every validation on the same seeded draws


def test_only_the_first_batches_are_scored():
    model = StubModel()
    batches = [(torch.full((2,), float(i)),) for i in range(validation_timing.SCORED_BATCHES + 3)]
    scores = validation_timing.first_scores(model, batches)
    assert scores.tolist() == [float(i) for i in range(validation_timing.SCORED_BATCHES) for _ in range(2)]


def test_timing_settings_merge_the_config_files_in_order(tmp_path, monkeypatch):
    """Beauty's DIN timing takes the sampled protocol from one file and the dataset's columns from another."""
    protocol, dataset = tmp_path / "protocol.yaml", tmp_path / "dataset.yaml"
    protocol.write_text("eval_args: {mode: uni100}\nMAX_ITEM_LIST_LENGTH: 20\n")
    dataset.write_text("MAX_ITEM_LIST_LENGTH: 50\nload_col: {item: [item_id, category]}\n")
    argv = ["x", "--config-files", str(protocol), str(dataset), "--data-path", "data", "--epochs", "2", "--out", "o"]
    monkeypatch.setattr("sys.argv", argv)
    args = validation_timing.parse_timing_arguments(argparse.ArgumentParser(), "din-uni100.yaml")
    args.model = "DIN"
    built = {}
    monkeypatch.setattr(validation_timing, "Config", lambda **kwargs: built.update(kwargs))
    monkeypatch.setattr(validation_timing, "run_experiment", lambda config, saved: "run")
    config_dict, run = validation_timing.train_for_timing(args, "DIN")
    assert run == "run" and built["config_dict"] is config_dict
    assert config_dict["MAX_ITEM_LIST_LENGTH"] == 50 and config_dict["load_col"] == {"item": ["item_id", "category"]}
    assert config_dict["eval_args"] == {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni100"}
    assert config_dict["epochs"] == 2 and config_dict["data_path"] == "data" and "backbone" not in config_dict
