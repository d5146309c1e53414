"""DUET on a backbone trained on its own: ``backbone_checkpoint`` loads it, ``freeze_backbone`` keeps it fixed,
and a checkpoint that does not fit is refused naming the file and what is wrong."""

import re

import pytest
import torch
from conftest import build_pipeline, write_atomic_dataset

from recbole_duet import quick_start
from recbole_duet.config import Config
from recbole_duet.errors import CheckpointError, ConfigError
from recbole_duet.model.warm_start import _load_into
from recbole_duet.quick_start import run_experiment

pytestmark = pytest.mark.kernel_sensitive


def trained_checkpoint(config_dict, model, **overrides):
    """Train ``model`` for one epoch; return the path of its best checkpoint."""
    run = run_experiment(Config(model=model, dataset="tiny", config_dict={**config_dict, **overrides}))
    return run["trainer"].saved_model_file


@pytest.fixture
def sasrec_checkpoint(tiny_config_dict):
    return trained_checkpoint(tiny_config_dict, "SASRec")


def duet_settings(config_dict, checkpoint, **overrides):
    return {**config_dict, "backbone": "SASRec", "backbone_checkpoint": checkpoint, **overrides}


def test_the_backbone_starts_from_the_checkpoint(tiny_config_dict, sasrec_checkpoint):
    trained = torch.load(sasrec_checkpoint, weights_only=True)["state_dict"]
    _, _, model = build_pipeline(duet_settings(tiny_config_dict, sasrec_checkpoint))
    loaded = model.backbone.state_dict()
    assert loaded.keys() == trained.keys()
    for name, value in trained.items():
        torch.testing.assert_close(loaded[name], value, atol=0, rtol=0, msg=name)
    _, _, fresh = build_pipeline(duet_settings(tiny_config_dict, None))
    assert not torch.equal(fresh.backbone.item_embedding.weight, trained["item_embedding.weight"])


@pytest.mark.parametrize("inference", ["generated", "global"])
def test_duet_starts_as_the_trained_backbone_and_can_move_away(tiny_config_dict, sasrec_checkpoint, inference):
    _, (train_data, _, test_data), model = build_pipeline(
        duet_settings(tiny_config_dict, sasrec_checkpoint, duet_inference=inference)
    )
    _, _, backbone = build_pipeline(tiny_config_dict, model="SASRec")
    backbone.load_state_dict(torch.load(sasrec_checkpoint, weights_only=True)["state_dict"])
    model.eval(), backbone.eval()
    batch = next(iter(test_data))[0]
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(batch), backbone.full_sort_predict(batch), atol=1e-6, rtol=0)
    model.train()
    loss = model.calculate_loss(next(iter(train_data)))
    (sum(loss) if isinstance(loss, tuple) else loss).backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    if inference == "generated":
        branch = model.generator.branches[0]
        assert branch.weight_decoder.output_layer().weight.grad.abs().sum() > 0
        assert branch.bias_decoder.weight.grad.abs().sum() > 0


def test_a_frozen_backbone_gets_no_gradient_and_does_not_move(tiny_config_dict, sasrec_checkpoint):
    settings = duet_settings(tiny_config_dict, sasrec_checkpoint, freeze_backbone=True)
    _, (train_data, _, _), model = build_pipeline(settings)
    model.train()
    sum(model.calculate_loss(next(iter(train_data)))).backward()
    assert all(parameter.grad is None for parameter in model.backbone.parameters())
    learning = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert any(name.startswith("classifier.") for name in learning)
    assert any(name.startswith("generator.") for name in learning)

    run = run_experiment(Config(model="DUET", dataset="tiny", config_dict={**settings, "epochs": 2}))
    trained = torch.load(sasrec_checkpoint, weights_only=True)["state_dict"]
    for name, value in run["trainer"].model.backbone.state_dict().items():
        torch.testing.assert_close(value, trained[name], atol=0, rtol=0, msg=name)


def test_an_unfrozen_backbone_keeps_learning(tiny_config_dict, sasrec_checkpoint):
    """One plain SGD step moves the loaded backbone's item table by exactly -lr x its (non-zero) gradient."""
    settings = duet_settings(tiny_config_dict, sasrec_checkpoint)
    _, (train_data, _, _), model = build_pipeline(settings)
    model.train()
    sum(model.calculate_loss(next(iter(train_data)))).backward()
    table = model.backbone.item_embedding.weight
    loaded, gradient = table.detach().clone(), table.grad.detach().clone()
    assert gradient.abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    assert not torch.equal(table.detach(), loaded)
    torch.testing.assert_close(table.detach(), loaded - 0.5 * gradient, atol=1e-7, rtol=0)


def test_a_checkpoint_of_another_model_is_refused(tiny_config_dict):
    checkpoint = trained_checkpoint(tiny_config_dict, "GRU4Rec")
    with pytest.raises(CheckpointError, match=r"'.*' \(backbone_checkpoint\) holds a 'GRU4Rec' model, not the 'SASRec' backbone_checkpoint needs"):
        build_pipeline(duet_settings(tiny_config_dict, checkpoint))


def test_a_checkpoint_of_another_dataset_is_refused(tiny_config_dict, tmp_path):
    other = {**tiny_config_dict, "data_path": write_atomic_dataset(str(tmp_path / "other"), name="tiny2")}
    run = run_experiment(Config(model="SASRec", dataset="tiny2", config_dict=other))
    with pytest.raises(CheckpointError, match="was trained on dataset 'tiny2', not 'tiny'"):
        build_pipeline(duet_settings(tiny_config_dict, run["trainer"].saved_model_file))


def test_a_checkpoint_of_another_shape_is_refused_naming_the_parameter(tiny_config_dict):
    checkpoint = trained_checkpoint(tiny_config_dict, "SASRec", MAX_ITEM_LIST_LENGTH=7)
    where = re.escape(f"Checkpoint file '{checkpoint}' (backbone_checkpoint)")
    with pytest.raises(CheckpointError, match=rf"^{where} does not fit this backbone: size mismatch for position_embedding\.weight"):
        build_pipeline(duet_settings(tiny_config_dict, checkpoint))


@pytest.mark.parametrize(
    "setting, trained_value, shown",
    [("n_heads", 2, "2, not 1"), ("hidden_act", "relu", "'relu', not 'gelu'"), ("hidden_size", 8, "8, not 16")],
)
def test_a_checkpoint_trained_under_other_backbone_settings_is_refused_naming_the_key(tiny_config_dict, setting, trained_value, shown):
    checkpoint = trained_checkpoint(tiny_config_dict, "SASRec", **{setting: trained_value})
    with pytest.raises(CheckpointError, match=rf"\(backbone_checkpoint\) was trained with {setting} {shown}\."):
        build_pipeline(duet_settings(tiny_config_dict, checkpoint))


def test_a_checkpoint_trained_under_other_dropout_and_loss_loads(tiny_config_dict):
    checkpoint = trained_checkpoint(tiny_config_dict, "SASRec", hidden_dropout_prob=0.1, attn_dropout_prob=0.1, loss_type="BPR")
    _, _, model = build_pipeline(duet_settings(tiny_config_dict, checkpoint))
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    torch.testing.assert_close(model.backbone.item_embedding.weight, trained["item_embedding.weight"], atol=0, rtol=0)


def test_freezing_without_a_checkpoint_is_refused_naming_the_key(tiny_config_dict):
    with pytest.raises(ConfigError) as error:
        Config(model="DUET", dataset="tiny", config_dict=duet_settings(tiny_config_dict, None, freeze_backbone=True))
    assert error.value.key == "freeze_backbone" and str(error.value) == (
        "Invalid value True for config key 'freeze_backbone': expected false unless backbone_checkpoint names a "
        "trained backbone."
    )


# ``cloud_checkpoint``: the generator learns on top of a cloud model trained (and early-stopped) on its own.


@pytest.fixture
def cloud_checkpoint(tiny_config_dict):
    """A DUET trained as its cloud model alone (the benchmarks' Layers model): backbone and global layers."""
    return trained_checkpoint(tiny_config_dict, "DUET", backbone="SASRec", duet_inference="global")


def cloud_settings(config_dict, checkpoint, **overrides):
    return {**config_dict, "backbone": "SASRec", "cloud_checkpoint": checkpoint, **overrides}


def cloud_state(model):
    return {name: value.detach().clone() for name, value in model.named_parameters() if name.startswith(("backbone.", "classifier."))}


def test_duet_starts_as_the_cloud_model_exactly(tiny_config_dict, cloud_checkpoint):
    trained = torch.load(cloud_checkpoint, weights_only=True)["state_dict"]
    _, (_, _, test_data), model = build_pipeline(cloud_settings(tiny_config_dict, cloud_checkpoint))
    loaded = cloud_state(model)
    assert loaded and {name.split(".")[0] for name in loaded} == {"backbone", "classifier"}
    for name, value in loaded.items():
        torch.testing.assert_close(value, trained[name], atol=0, rtol=0, msg=name)
    model.eval()
    batch = next(iter(test_data))[0]
    with torch.no_grad():
        generated = model.full_sort_predict(batch)
        model.inference = "global"
        torch.testing.assert_close(generated, model.full_sort_predict(batch), atol=1e-6, rtol=0)


@pytest.mark.parametrize("ppg_scope", ["all", "generator"])  # 'all' would reach the cloud model were it not fixed
def test_with_a_cloud_model_only_the_generator_and_adapter_learn(tiny_config_dict, cloud_checkpoint, ppg_scope, monkeypatch):
    settings = cloud_settings(tiny_config_dict, cloud_checkpoint, ppg_scope=ppg_scope)
    _, (train_data, _, _), model = build_pipeline(settings)
    model.train()
    loss_ppg, loss_umn = model.calculate_loss(next(iter(train_data)))
    assert loss_umn.item() == 0
    (loss_ppg + loss_umn).backward()
    learning = {name.split(".")[0] for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert learning == {"generator", "stabilizer"}
    branch = model.generator.branches[0]
    assert branch.weight_decoder.output_layer().weight.grad.abs().sum() > 0
    assert branch.bias_decoder.weight.grad.abs().sum() > 0

    before = cloud_state(model)
    # the best epoch even where the cloud model validates above it (tests/test_starting_model.py): the generator moved
    monkeypatch.setattr(quick_start, "checks_starting_model", lambda *args: False)
    run = run_experiment(Config(model="DUET", dataset="tiny", config_dict={**settings, "epochs": 2}))
    after = cloud_state(run["trainer"].model)
    for name, value in before.items():
        torch.testing.assert_close(after[name], value, atol=0, rtol=0, msg=name)
    moved = run["trainer"].model.generator.branches[0].bias_decoder.weight
    assert moved.abs().sum() > 0  # started at zero


def test_a_cloud_checkpoint_of_a_plain_backbone_is_refused(tiny_config_dict, sasrec_checkpoint):
    with pytest.raises(CheckpointError, match=r"\(cloud_checkpoint\) holds a 'SASRec' model, not the 'DUET' or 'Finetune' cloud_checkpoint needs"):
        build_pipeline(cloud_settings(tiny_config_dict, sasrec_checkpoint))


def test_a_cloud_checkpoint_on_another_backbone_is_refused(tiny_config_dict):
    checkpoint = trained_checkpoint(tiny_config_dict, "DUET", backbone="GRU4Rec", duet_inference="global")
    with pytest.raises(CheckpointError, match=r"\(cloud_checkpoint\) was trained with backbone 'GRU4Rec', not 'SASRec'"):
        build_pipeline(cloud_settings(tiny_config_dict, checkpoint))


def test_a_cloud_checkpoint_whose_layers_compute_another_function_is_refused(tiny_config_dict, cloud_checkpoint):
    with pytest.raises(CheckpointError, match=r"\(cloud_checkpoint\) was trained with duet_activation 'tanh', not 'relu'"):
        build_pipeline(cloud_settings(tiny_config_dict, cloud_checkpoint, duet_activation="relu"))


def test_a_cloud_checkpoint_whose_backbone_has_other_heads_is_refused(tiny_config_dict, cloud_checkpoint):
    with pytest.raises(CheckpointError, match=r"\(cloud_checkpoint\) was trained with n_heads 1, not 2\."):
        build_pipeline(cloud_settings(tiny_config_dict, cloud_checkpoint, n_heads=2))


def test_a_cloud_checkpoint_with_other_dynamic_layers_is_refused_naming_the_module(tiny_config_dict):
    checkpoint = trained_checkpoint(tiny_config_dict, "DUET", backbone="SASRec", duet_inference="global", duet_layers=3)
    where = re.escape(f"Checkpoint file '{checkpoint}' (cloud_checkpoint)")
    with pytest.raises(CheckpointError, match=rf"^{where} does not fit this classifier: size mismatch for weight"):
        build_pipeline(cloud_settings(tiny_config_dict, checkpoint))


def test_a_load_error_without_torchs_problem_list_is_reported_whole():
    """torch lists a state dict's problems after a tab; an error without that list is passed on as it is."""

    class Refusing(torch.nn.Module):
        def load_state_dict(self, state_dict, strict=True):
            raise RuntimeError("the weights are on a device this machine lacks")

    with pytest.raises(CheckpointError) as error:
        _load_into(Refusing(), {}, "'ck.pth' (cloud_checkpoint)", "backbone")
    assert str(error.value) == (
        "'ck.pth' (cloud_checkpoint) does not fit this backbone: the weights are on a device this machine lacks"
    )


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"backbone_checkpoint": __file__}, "backbone_checkpoint"),
        ({"duet_inference": "global"}, "duet_inference"),
        ({"backbone": "DIN"}, "cloud_checkpoint"),
    ],
)
def test_settings_a_fixed_cloud_model_cannot_use_are_refused_naming_the_key(tiny_config_dict, overrides, key):
    with pytest.raises(ConfigError) as error:
        Config(model="DUET", dataset="tiny", config_dict=cloud_settings(tiny_config_dict, __file__, **overrides))
    assert error.value.key == key


def test_building_a_model_reads_no_file_the_runner_loads_the_starting_model(tiny_config_dict, tmp_path):
    """The starting model is the runner's business: a DUET naming a checkpoint it cannot start from builds (its
    constructor reads no file, so a reload of a trained model needs none of its training's start); the runner's
    pipeline refuses it, naming the file."""
    from recbole.data import create_dataset, data_preparation

    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    for key in ("cloud_checkpoint", "backbone_checkpoint"):
        config = Config(model="DUET", dataset="tiny", config_dict={**tiny_config_dict, key: str(broken)})
        train_data, _, _ = data_preparation(config, create_dataset(config))
        config.model_class(config, train_data._dataset)  # no error
        with pytest.raises(CheckpointError, match="broken.pth"):
            build_pipeline({**tiny_config_dict, key: str(broken)})


def test_the_runner_asks_the_model_class_what_a_run_of_it_is(tiny_config_dict, tmp_path):
    import types

    from recbole_duet.training.cloud_first import trains_cloud_first
    from recbole_duet.training.starting_model import starts_from_trained_model

    class OwnModel:  # a model of one's own that declares two trainings, whatever its name
        @classmethod
        def trains_cloud_first(cls, config):
            return True

    assert trains_cloud_first(types.SimpleNamespace(model_class=OwnModel))
    (tmp_path / "start.pth").write_bytes(b"")
    start = {**tiny_config_dict, "backbone_checkpoint": str(tmp_path / "start.pth")}
    assert starts_from_trained_model(Config(model="DUET", dataset="tiny", config_dict=start))
    sasrec = Config(model="SASRec", dataset="tiny", config_dict=tiny_config_dict)
    assert not trains_cloud_first(sasrec) and not starts_from_trained_model(sasrec)  # RecBole's models declare nothing
    assert not starts_from_trained_model(types.SimpleNamespace(model_class=type("Plain", (), {})))
