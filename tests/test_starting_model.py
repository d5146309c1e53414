"""A training that starts from a trained model (DUET's generator stage on its cloud model) keeps that model when
no epoch validates above it, and its training runs exactly as it would without that check."""

import types

import pytest
import torch

from recbole_duet import quick_start
from recbole_duet.config import Config
from recbole_duet.model import DUET
from recbole_duet.quick_start import run_experiment
from recbole_duet.training.starting_model import StartingModel

pytestmark = pytest.mark.kernel_sensitive


def train(config_dict, state_file=None, **overrides):
    return run_experiment(Config(model="DUET", dataset="tiny", config_dict={**config_dict, **overrides}), state_file=state_file)


@pytest.fixture
def cloud_model(tiny_config_dict):
    """A trained cloud model (DUET's global layers on SASRec, the benchmarks' Layers model) and its run."""
    run = train(tiny_config_dict, backbone="SASRec", duet_inference="global", epochs=8, learning_rate=0.01)
    assert run["start_valid_score"] is None and run["kept_start"] is False  # trained from scratch: no start to keep
    return run


def generator_stage(config_dict, cloud_model, state_file=None, **overrides):
    settings = {"backbone": "SASRec", "cloud_checkpoint": cloud_model["trainer"].saved_model_file, "epochs": 3}
    return train(config_dict, state_file, **{**settings, **overrides})


def test_the_starting_model_is_validated_as_the_cloud_model_scores(tiny_config_dict, cloud_model):
    run = generator_stage(tiny_config_dict, cloud_model)
    assert run["start_valid_score"] == cloud_model["result"]["best_valid_score"]  # the update starts at zero
    curve = run["valid_curve"]
    assert run["kept_start"] == (run["start_valid_score"] > max(curve))
    assert run["result"]["best_valid_score"] == max(run["start_valid_score"], *curve)


def rank_in_reverse(monkeypatch, once_trained):
    """Build a generator stage whose epochs all validate below its start (``once_trained``) or all above it, on
    purpose rather than hoped for from a setting (a high generator rate lowered validation on one CPU and raised it
    on another): the model ranks the items in reverse while its generated update is non-zero (``once_trained``), i.e.
    once its decoder biases have left the zero they start at, which one epoch of generator training does, or while
    it is zero (the start). RecBole masks only the padding item after scoring, so a reversed ranking puts the
    validation targets that the model ranks well at the bottom."""
    full_sort_predict = DUET.full_sort_predict

    def reversed_scores(self, interaction):
        scores = full_sort_predict(self, interaction)
        trained = any(p.abs().sum() > 0 for name, p in self.named_parameters() if "bias_decoder" in name)
        return -scores if trained == once_trained else scores

    monkeypatch.setattr(DUET, "full_sort_predict", reversed_scores)


@pytest.fixture
def every_epoch_loses(monkeypatch):
    rank_in_reverse(monkeypatch, once_trained=True)


@pytest.fixture
def every_epoch_wins(monkeypatch):
    rank_in_reverse(monkeypatch, once_trained=False)


def test_a_generator_stage_that_only_loses_keeps_the_cloud_model(
    tiny_config_dict, cloud_model, run_dir, every_epoch_loses
):
    state_file = run_dir / "wrecked.state.pth"
    run = generator_stage(tiny_config_dict, cloud_model, str(state_file))
    assert len(run["valid_curve"]) == 3 and max(run["valid_curve"]) < run["start_valid_score"]
    assert run["kept_start"] is True
    assert run["result"]["best_valid_score"] == cloud_model["result"]["best_valid_score"]
    assert run["result"]["best_valid_result"] == cloud_model["result"]["best_valid_result"]
    assert run["result"]["test_result"] == cloud_model["result"]["test_result"]  # the best checkpoint is the start
    saved = torch.load(run["trainer"].saved_model_file, weights_only=True)
    assert saved["epoch"] == -1 and saved["best_valid_score"] == run["start_valid_score"]
    assert all(value.abs().sum() == 0 for name, value in saved["state_dict"].items() if "bias_decoder" in name)
    again = generator_stage(tiny_config_dict, cloud_model, str(state_file))
    assert again["kept_start"] is True and again["result"] == run["result"]  # a finished state re-tested: the same


def test_the_check_leaves_the_training_as_it_would_have_been(tiny_config_dict, cloud_model, monkeypatch, every_epoch_wins):
    """Validating the starting model draws from no random stream the training uses: same batches, same dropout."""
    settings = {"hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "update_dropout": 0.5}
    checked = generator_stage(tiny_config_dict, cloud_model, **settings)
    monkeypatch.setattr(quick_start, "checks_starting_model", lambda *args: False)
    unchecked = generator_stage(tiny_config_dict, cloud_model, **settings)
    assert unchecked["start_valid_score"] is None
    assert checked["valid_curve"] == unchecked["valid_curve"]
    assert checked["kept_start"] is False  # every epoch beat the start, so both runs end on a trained model
    trained = unchecked["trainer"].model.state_dict()
    for name, value in checked["trainer"].model.state_dict().items():
        torch.testing.assert_close(value, trained[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("bigger, start, best, kept", [(True, 0.3, 0.2, True), (True, 0.2, 0.2, False), (False, 0.1, 0.2, True), (False, 0.3, 0.2, False)])
def test_the_start_is_kept_only_when_strictly_better_in_the_metrics_direction(bigger, start, best, kept):
    model = torch.nn.Linear(2, 2)
    starting = object.__new__(StartingModel)
    starting.state_dict = {name: torch.zeros_like(value) for name, value in model.state_dict().items()}
    starting.valid_score, starting.valid_result = start, {"metric": start}
    trainer = types.SimpleNamespace(model=model, best_valid_score=best, best_valid_result={"metric": best}, valid_metric_bigger=bigger)
    assert starting.keep_if_better(trainer, saved=False) is kept
    assert trainer.best_valid_score == (start if kept else best)
    assert bool(model.weight.abs().sum() == 0) is kept
