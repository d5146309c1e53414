"""The plugin's Config: defaults, backbone yaml layering, validation at start, dataset discovery."""

import os
import urllib.error

import pytest
from conftest import write_atomic_dataset

from recbole_duet import data as duet_data
from recbole_duet.config import Config, properties_dir
from recbole_duet.data import ensure_dataset_files
from recbole_duet.errors import ConfigError, DatasetNotFoundError
from recbole_duet.model import DUET, Finetune, FinetuneDIN


def test_defaults_are_duet_on_the_bundled_ml_100k(run_dir):
    config = Config()
    assert config["model"] == "DUET" and config.model_class is DUET
    assert config["dataset"] == "ml-100k"
    assert os.path.isfile(os.path.join(config["data_path"], "ml-100k.inter"))
    assert config["backbone"] == "SASRec" and config["realtime_window"] == 10
    assert config["train_neg_sample_args"]["distribution"] == "none"  # CE needs no training negatives


def test_user_copy_of_ml_100k_in_data_path_wins(run_dir):
    write_atomic_dataset(str(run_dir / "mine"), name="ml-100k")
    config = Config(config_dict={"data_path": str(run_dir / "mine")})
    assert config["data_path"] == str(run_dir / "mine" / "ml-100k")


@pytest.mark.parametrize(
    "backbone, expected",
    [("SASRec", {"n_heads": 2, "inner_size": 256}), ("GRU4Rec", {"embedding_size": 64, "dropout_prob": 0.3})],
)
def test_backbone_yaml_is_layered_under_duet_and_user_keys(run_dir, backbone, expected):
    config = Config(model="DUET", config_dict={"backbone": backbone, "hidden_size": 32})
    for key, value in expected.items():
        assert config[key] == value
    assert config["hidden_size"] == 32  # the user's override wins over the backbone yaml
    assert config["umn_weight"] == 1.0 and config["realtime_window"] == 10  # DUET.yaml is loaded wherever the run is


@pytest.mark.parametrize(
    "backbone, ppg_scope, training_order",
    [("SASRec", "generator", "cloud_first"), ("GRU4Rec", "all", "cloud_first"), ("DIN", "all", "joint")],
)
def test_a_backbone_gets_the_duet_defaults_its_validation_chose(run_dir, backbone, ppg_scope, training_order):
    """DUET-<backbone>.yaml is layered over DUET.yaml for its backbone only; the other keys stay DUET.yaml's."""
    config = Config(model="DUET", config_dict={"backbone": backbone})
    assert config["ppg_scope"] == ppg_scope
    assert config["training_order"] == training_order
    assert config["umn_weight"] == 1.0 and config["generator_rank"] == 8


def test_the_users_value_wins_over_the_backbones_duet_default(run_dir):
    config = Config(model="DUET", config_dict={"ppg_scope": "all"})
    assert config["backbone"] == "SASRec" and config["ppg_scope"] == "all"


def test_switching_off_the_umn_with_sasrec_asks_for_ppg_scope_all(run_dir):
    with pytest.raises(ConfigError, match="'ppg_scope': expected 'all' with umn_weight 0.*SASRec's default"):
        Config(model="DUET", config_dict={"umn_weight": 0.0})
    assert Config(model="DUET", config_dict={"umn_weight": 0.0, "ppg_scope": "all"})["umn_weight"] == 0.0


def test_bpr_keeps_training_negatives(run_dir):
    config = Config(model="DUET", config_dict={"loss_type": "BPR"})
    assert config["train_neg_sample_args"]["sample_num"] == 1


def test_plain_recbole_models_resolve_through_the_plugin_config(run_dir):
    config = Config(model="GRU4Rec")
    assert config["model"] == "GRU4Rec" and config["num_layers"] == 1
    assert "backbone" not in config


@pytest.mark.parametrize(
    "model, key, value, allowed",
    [
        ("DUET", "backbone", "Foo", "'NARM', 'NextItNet', 'SASRec'"),
        ("DUET", "realtime_window", 0, "an integer >= 1"),
        ("DUET", "duet_layers", 0, "an integer >= 1"),
        ("DUET", "generator_rank", -1, "an integer >= 0"),
        ("DUET", "duet_inference", "tuned", "['generated', 'global']"),
        ("Finetune", "finetune_steps", 0, "an integer >= 1"),
        ("Finetune", "finetune_lr", 0, "a number > 0"),
        ("DUET", "stabilizer", "maybe", "true or false"),
        ("DUET", "umn_weight", -0.5, "a number >= 0"),
        ("DUET", "generator_input", "history", "['window', 'backbone']"),
        ("Finetune", "finetune_scope", "everything", "['dynamic', 'all']"),
        ("Finetune", "backbone", "Foo", "'NARM', 'NextItNet', 'SASRec'"),
        ("Finetune", "realtime_window", 0, "an integer >= 1"),
    ],
)
def test_bad_keys_fail_at_start_naming_key_and_allowed_values(run_dir, model, key, value, allowed):
    with pytest.raises(ConfigError) as error:
        Config(model=model, dataset="no-such-data", config_dict={"cloud_checkpoint": __file__, key: value})
    assert f"'{key}'" in str(error.value) and allowed in str(error.value) and repr(value) in str(error.value)


def test_duet_refuses_the_fine_tuning_baseline_naming_the_model_that_is_it(run_dir):
    """``duet_inference: finetune`` was DUET's third mode; the baseline is now a model of its own."""
    with pytest.raises(ConfigError) as error:
        Config(model="DUET", dataset="ml-100k", config_dict={"duet_inference": "finetune"})
    assert error.value.key == "duet_inference"
    assert str(error.value) == (
        "Invalid value 'finetune' for config key 'duet_inference': expected one of ['generated', 'global'] "
        "(on-device fine-tuning is a model of its own: model: Finetune)."
    )


def test_whole_model_finetuning_is_for_next_item_backbones(run_dir):
    settings = {"backbone": "DIN", "finetune_scope": "all", "cloud_checkpoint": __file__}
    with pytest.raises(ConfigError, match="'finetune_scope'.*'dynamic' with backbone DIN"):
        Config(model="Finetune", dataset="ml-100k", config_dict=settings)


@pytest.mark.parametrize("backbone, also", [("SASRec", False), ("DIN", True)])
def test_the_fine_tuning_baseline_needs_the_cloud_model_it_tunes(run_dir, backbone, also):
    with pytest.raises(ConfigError) as error:
        Config(model="Finetune", dataset="ml-100k", config_dict={"backbone": backbone})
    assert error.value.key == "cloud_checkpoint" and "duet_inference: global" in str(error.value)
    assert ("(with backbone DIN, a trained DIN too)" in str(error.value)) is also  # DIN's own checkpoint is one


@pytest.mark.parametrize("backbone, model_class", [("SASRec", Finetune), ("GRU4Rec", Finetune), ("DIN", FinetuneDIN)])
def test_model_finetune_resolves_to_its_class_for_the_backbone_with_its_own_keys(run_dir, backbone, model_class):
    config = Config(model="Finetune", dataset="ml-100k", config_dict={"backbone": backbone, "cloud_checkpoint": __file__})
    assert config["model"] == "Finetune" and config.model_class is model_class
    assert config["finetune_steps"] == 10 and config["realtime_window"] == 10
    assert "generator_rank" not in config and "duet_inference" not in config  # DUET's keys are DUET's
    assert "finetune_steps" not in Config(model="DUET", dataset="ml-100k", config_dict={"backbone": backbone})


def test_backbone_states_need_a_backbone_that_has_them(run_dir):
    with pytest.raises(ConfigError, match="'generator_input'.*'window' with backbone DIN"):
        Config(model="DUET", dataset="ml-100k", config_dict={"backbone": "DIN", "generator_input": "backbone"})


def test_an_attention_head_encoder_reads_a_window_not_backbone_states(run_dir):
    with pytest.raises(ConfigError) as error:
        Config(model="DUET", dataset="ml-100k", config_dict={"head_encoder": "attention", "generator_input": "backbone"})
    assert str(error.value) == (
        "Invalid value 'attention' for config key 'head_encoder': expected 'gru' (the default) with generator_input "
        "'backbone', whose states are pooled, not encoded again."
    )


def test_properties_ship_inside_the_package_or_the_checkout():
    assert os.path.isfile(os.path.join(properties_dir(), "model", "DUET.yaml"))
    assert os.path.isfile(os.path.join(properties_dir(), "dataset", "ml-1m.yaml"))


def test_ml_1m_gets_the_shipped_dataset_properties(run_dir):
    config = Config(model="DUET", dataset="ml-1m")
    assert config["user_inter_num_interval"] == "[10,inf)"
    assert config["val_interval"] == {"rating": "[3,inf)"}


def test_unknown_dataset_error_names_the_missing_file(run_dir):
    config = Config(model="DUET", dataset="mystery", config_dict={"data_path": str(run_dir)})
    with pytest.raises(DatasetNotFoundError) as error:
        ensure_dataset_files(config)
    message = str(error.value)
    assert os.path.join(str(run_dir), "mystery", "mystery.inter") in message and "mystery.item" in message


def test_known_dataset_offline_fails_at_once_with_instructions(run_dir, monkeypatch):
    def offline(url, folder):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(duet_data, "download_url", offline)
    config = Config(model="DUET", dataset="ml-1m", config_dict={"data_path": str(run_dir)})
    with pytest.raises(DatasetNotFoundError) as error:
        ensure_dataset_files(config)
    message = str(error.value)
    assert "ml-1m.inter" in message and os.path.join(str(run_dir), "ml-1m") in message
    assert "no route to host" in message
