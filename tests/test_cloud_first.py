"""``training_order: cloud_first``: the cloud model's training, then the generator's on it, kept fixed, in one run."""

import json
import os

import pytest
import torch

from recbole_duet import quick_start
from recbole_duet.config import Config
from recbole_duet.deploy.export import load_trained_model
from recbole_duet.quick_start import run_experiment, run_recbole_duet
from recbole_duet.training.cloud_first import trains_cloud_first

pytestmark = pytest.mark.kernel_sensitive


def cloud_first_run(config_dict, state_file=None, **overrides):
    config = Config(model="DUET", dataset="tiny", config_dict={**config_dict, "epochs": 2, **overrides})
    return run_experiment(config, state_file=state_file)


def cloud_files(run_dir):
    return sorted((run_dir / "saved" / "cloud").glob("DUET-*.pth"))


def saved_config(path):
    return json.loads(torch.load(path, weights_only=True)["config"])


@pytest.mark.parametrize("backbone", ["SASRec", "GRU4Rec"])
def test_the_generator_learns_on_the_cloud_model_the_first_stage_kept(tiny_config_dict, run_dir, backbone, monkeypatch):
    # the best epoch even where the cloud model validates above it (tests/test_starting_model.py), so the generator's
    # learning shows in the run's model
    monkeypatch.setattr(quick_start, "checks_starting_model", lambda *args: False)
    run = cloud_first_run(tiny_config_dict, backbone=backbone)
    (cloud_file,) = cloud_files(run_dir)
    cloud = torch.load(cloud_file, weights_only=True)
    assert json.loads(cloud["config"])["duet_inference"] == "global"  # the cloud model alone, trained on L_umn
    model = run["trainer"].model
    assert saved_config(run["trainer"].saved_model_file)["cloud_checkpoint"] == str(cloud_file.resolve())
    state = model.state_dict()
    fixed = [name for name in cloud["state_dict"] if name.startswith(("backbone.", "classifier."))]
    assert fixed and all(torch.equal(state[name], cloud["state_dict"][name]) for name in fixed)
    assert model.generator.branches[0].bias_decoder.weight.abs().sum() > 0  # started at zero: the generator learned
    assert run["epochs"] == 2 and run["cloud_stage"]["epochs"] == 2 and len(run["cloud_stage"]["valid_curve"]) == 2


def test_the_runs_global_layers_are_the_cloud_stages_model(tiny_config_dict, run_dir):
    """What the cloud stage tested is what the final model scores with its global layers alone (its Base)."""
    run = cloud_first_run(tiny_config_dict)
    trainer, (_, _, test_data) = run["trainer"], run["data"]
    trainer.model.inference = "global"
    assert trainer.evaluate(test_data, load_best_model=False) == run["cloud_stage"]["result"]["test_result"]


def test_one_log_file_holds_both_stages(tiny_config_dict, run_dir):
    cloud_first_run({**tiny_config_dict, "state": "INFO"})
    (log_file,) = (run_dir / "log" / "DUET").glob("*.log")
    text = log_file.read_text()
    assert text.count("Finished training") + text.count("Loading model structure") >= 2
    assert "training_order cloud_first" in text and str(cloud_files(run_dir)[0].resolve()) in text


@pytest.mark.parametrize(
    "overrides",
    [{"training_order": "joint"}, {"duet_inference": "global"}],
    ids=["joint", "global"],
)
def test_other_runs_are_one_training(tiny_config_dict, run_dir, overrides):
    run = cloud_first_run(tiny_config_dict, **overrides)
    assert "cloud_stage" not in run and not (run_dir / "saved" / "cloud").exists()
    assert saved_config(run["trainer"].saved_model_file)["cloud_checkpoint"] is None


def test_a_run_given_its_cloud_model_trains_the_generator_only(tiny_config_dict, run_dir):
    layers = cloud_first_run(tiny_config_dict, duet_inference="global")
    cloud_file = layers["trainer"].saved_model_file
    config = Config(model="DUET", dataset="tiny", config_dict={**tiny_config_dict, "cloud_checkpoint": cloud_file})
    assert config["training_order"] == "cloud_first" and not trains_cloud_first(config)
    assert trains_cloud_first(Config(model="DUET", dataset="tiny", config_dict=tiny_config_dict))
    assert not trains_cloud_first(Config(model="SASRec", dataset="tiny", config_dict=tiny_config_dict))
    finetune = Config(model="Finetune", dataset="tiny", config_dict={**tiny_config_dict, "cloud_checkpoint": cloud_file})
    assert finetune["training_order"] is None and not trains_cloud_first(finetune)  # it tunes a trained cloud model


def test_a_backbone_checkpoint_starts_the_cloud_stage(tiny_config_dict, run_dir):
    plain = run_recbole_duet(model="SASRec", dataset="tiny", config_dict=tiny_config_dict)
    assert plain["test_result"]
    (backbone_file,) = (run_dir / "saved").glob("SASRec-*.pth")
    backbone = torch.load(backbone_file, weights_only=True)["state_dict"]
    run = cloud_first_run(tiny_config_dict, backbone_checkpoint=str(backbone_file), freeze_backbone=True)
    (cloud_file,) = cloud_files(run_dir)
    assert saved_config(cloud_file)["backbone_checkpoint"] == str(backbone_file)
    generator_stage = saved_config(run["trainer"].saved_model_file)
    assert generator_stage["backbone_checkpoint"] is None and generator_stage["freeze_backbone"] is False
    state = run["trainer"].model.state_dict()
    assert all(torch.equal(state["backbone." + name], value) for name, value in backbone.items())  # frozen twice


def test_a_resumed_run_goes_on_from_both_stages_states(tiny_config_dict, run_dir):
    state_file = run_dir / "states" / "run.state.pth"
    os.makedirs(state_file.parent)
    first = cloud_first_run(tiny_config_dict, state_file=str(state_file))
    assert (run_dir / "states" / "cloud-run.state.pth").is_file() and state_file.is_file()
    again = cloud_first_run(tiny_config_dict, state_file=str(state_file))  # both finished: only re-tested
    assert again["result"] == first["result"] and again["cloud_stage"]["result"] == first["cloud_stage"]["result"]
    assert again["resumed_seconds"] > 0 and again["cloud_stage"]["resumed_seconds"] > 0
    assert len(cloud_files(run_dir)) == 1  # the cloud stage was not trained again


def test_a_cloud_first_model_exports_without_its_cloud_file(tiny_config_dict, run_dir):
    """The run's checkpoint holds every weight: the cloud model's file it started from is not needed to export."""
    run = cloud_first_run(tiny_config_dict)
    trainer, (_, _, test_data) = run["trainer"], run["data"]
    (cloud_file,) = cloud_files(run_dir)
    cloud_file.unlink()
    _, _, _, model, _ = load_trained_model(trainer.saved_model_file, data_path=tiny_config_dict["data_path"])
    batch = next(iter(test_data))[0]
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(batch), trainer.model.full_sort_predict(batch))
