"""Per-epoch training state: a training stopped after any epoch and resumed ends exactly where an uninterrupted one
ends (same weights, losses, validation curve, best validation result), a finished one is only re-tested, and
trainers with their own loop are left alone."""

import pytest
import torch
from recbole.utils import ModelType

from recbole_duet.config import Config
from recbole_duet.quick_start import run_experiment
from recbole_duet.training.checkpoint import load_checkpoint, save_checkpoint
from recbole_duet.training.state import keeps_training_state
from recbole_duet.training.trainer import get_trainer

pytestmark = pytest.mark.kernel_sensitive


def train(config_dict, state_file, epochs, model="DUET"):
    config = Config(model=model, dataset="tiny", config_dict={**config_dict, "epochs": epochs})
    return run_experiment(config, saved=True, state_file=str(state_file))


@pytest.fixture
def gru_config(tiny_config_dict):
    # GRU4Rec's dropout draws from torch's random stream every step: a resume that lost it would show.
    return {**tiny_config_dict, "backbone": "GRU4Rec", "stopping_step": 10}


def test_a_training_resumed_after_each_epoch_ends_like_an_uninterrupted_one(gru_config, tmp_path):
    straight = train(gru_config, tmp_path / "straight.pth", epochs=3)
    for epochs in (1, 2, 3):  # stopped after every epoch, each time resumed by a fresh process' worth of objects
        resumed = train(gru_config, tmp_path / "resumed.pth", epochs=epochs)
    final, expected = load_checkpoint(tmp_path / "resumed.pth"), load_checkpoint(tmp_path / "straight.pth")
    assert final["epoch"] == expected["epoch"] == 2
    assert final["train_loss"] == expected["train_loss"] and len(final["train_loss"]) == 3
    for name, value in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], value), name
    assert resumed["result"] == straight["result"]  # best valid result and the best checkpoint's test result
    assert resumed["epochs"] == 3 and resumed["resumed_seconds"] > 0
    assert resumed["valid_curve"] == straight["valid_curve"] and None not in straight["valid_curve"]
    # the best epoch, or the cloud model the generator stage started from (tests/test_starting_model.py)
    assert max(straight["valid_curve"] + [straight["start_valid_score"]]) == straight["result"]["best_valid_score"]


def test_a_state_file_from_before_the_scores_were_kept_still_resumes(gru_config, tmp_path):
    state_file = tmp_path / "state.pth"
    train(gru_config, state_file, epochs=1)
    older = load_checkpoint(state_file)
    del older["valid_scores"]  # what the harness wrote before it kept every epoch's validation score
    save_checkpoint(older, state_file)
    resumed = train(gru_config, state_file, epochs=2)
    assert resumed["epochs"] == 2 and resumed["valid_curve"][0] is None and resumed["valid_curve"][1] > 0


def test_a_finished_training_is_only_retested(gru_config, tmp_path):
    state_file = tmp_path / "state.pth"
    first = train(gru_config, state_file, epochs=2)
    again = train(gru_config, state_file, epochs=2)
    assert again["result"] == first["result"] and again["epochs"] == 2
    assert load_checkpoint(state_file)["epoch"] == 1  # nothing was trained (or saved) a second time
    assert again["fit_seconds"] == pytest.approx(first["fit_seconds"], abs=0.5)


def test_a_training_stopped_early_is_not_trained_further(gru_config, tmp_path):
    state_file = tmp_path / "state.pth"
    first = train({**gru_config, "stopping_step": 0, "learning_rate": 0.5}, state_file, epochs=30)
    assert first["epochs"] < 30  # a huge step size makes validation fall, so patience 0 stops it
    again = train({**gru_config, "stopping_step": 0, "learning_rate": 0.5}, state_file, epochs=30)
    assert again["epochs"] == first["epochs"] and again["result"] == first["result"]


def test_a_state_file_needs_the_best_checkpoint_saved(gru_config, tmp_path):
    config = Config(model="DUET", dataset="tiny", config_dict=gru_config)
    with pytest.raises(ValueError, match="state_file needs saved=True"):
        run_experiment(config, saved=False, state_file=str(tmp_path / "state.pth"))


def test_only_trainers_running_recboles_own_loop_keep_a_state():
    own_loop = get_trainer(ModelType.SEQUENTIAL, "S3Rec")  # pre-training trainer with its own fit
    recbole_loop = get_trainer(ModelType.SEQUENTIAL, "DUET")
    assert keeps_training_state(object.__new__(recbole_loop))
    assert not keeps_training_state(object.__new__(own_loop))
