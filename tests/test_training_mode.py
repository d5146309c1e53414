"""Autograd's anomaly mode: RecBole switches it on at import (its SINE module), the runner switches it off."""

import pytest
import torch
from recbole.model.sequential_recommender import SASRec

from recbole_duet import run_recbole_duet
from recbole_duet.config import Config
from recbole_duet.errors import ConfigError
from recbole_duet.model import DUET


def record_anomaly_mode(monkeypatch, model_class):
    """Make ``model_class.calculate_loss`` note whether anomaly mode is on at every training step."""
    seen = []
    original = model_class.calculate_loss

    def calculate_loss(self, interaction):
        seen.append(torch.is_anomaly_enabled())
        return original(self, interaction)

    monkeypatch.setattr(model_class, "calculate_loss", calculate_loss)
    return seen


@pytest.fixture
def anomaly_mode_as_recbole_leaves_it():
    """Importing recbole's sequential models turns the mode on; restore whatever it was after the test."""
    before = torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(True)
    yield
    torch.autograd.set_detect_anomaly(before)


@pytest.mark.parametrize("model, model_class", [("DUET", DUET), ("SASRec", SASRec)])
@pytest.mark.parametrize("asked", [None, False, True], ids=["default", "off", "on"])
def test_training_runs_without_anomaly_mode_unless_asked(
    monkeypatch, tiny_config_dict, anomaly_mode_as_recbole_leaves_it, model, model_class, asked
):
    seen = record_anomaly_mode(monkeypatch, model_class)
    config_dict = dict(tiny_config_dict) if asked is None else {**tiny_config_dict, "detect_anomaly": asked}
    run_recbole_duet(model=model, dataset="tiny", config_dict=config_dict)
    assert seen and set(seen) == {bool(asked)}


def test_detect_anomaly_must_be_a_boolean(run_dir):
    with pytest.raises(ConfigError, match="'detect_anomaly'.*true or false"):
        Config(model="SASRec", dataset="ml-100k", config_dict={"detect_anomaly": "yes"})
