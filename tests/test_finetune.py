"""The on-device fine-tuning baseline, a model of its own (``model: Finetune``) on a trained cloud model."""

import copy
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_device_parameters_equal, build_pipeline, finetune_pipeline, layers_checkpoint

from recbole_duet.config import Config
from recbole_duet.errors import CheckpointError
from recbole_duet.quick_start import run_experiment
from recbole_duet.model.backbones import encode_sequence
from recbole_duet.model.finetune import cut_at_prefix, finetune_all_parameters, mean_over_pairs, window_training_pairs

pytestmark = pytest.mark.kernel_sensitive


def test_window_training_pairs_are_the_window_items_after_some_history():
    item_seq = torch.tensor([[5, 6, 7, 8, 9, 0], [3, 4, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]])
    prefix_len, targets, is_pair = window_training_pairs(item_seq, torch.tensor([5, 2, 1]), 3)
    assert (targets * is_pair).tolist() == [[7, 8, 9], [0, 4, 0], [0, 0, 0]]
    assert (prefix_len * is_pair).tolist() == [[2, 3, 4], [0, 1, 0], [0, 0, 0]]


def test_a_devices_loss_is_the_mean_over_its_own_pairs():
    pair_losses = torch.tensor([[2.0, 4.0, 9.0], [3.0, 9.0, 9.0], [9.0, 9.0, 9.0]])
    is_pair = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    assert mean_over_pairs(pair_losses, is_pair).tolist() == [3.0, 3.0, 0.0]


def finetune_model(tiny_config_dict, **overrides):
    _, loaders, model = finetune_pipeline({**tiny_config_dict, "finetune_steps": 5, **overrides})
    model.eval()
    return model, next(iter(loaders[0]))


def global_scores(model, item_seq, item_seq_len):
    """The cloud model's own scores ``[B, n_items]``: every device on the global layers, untuned."""
    return model.scoring.full_sort(model.classifier(encode_sequence(model.backbone, item_seq, item_seq_len)))


@pytest.mark.parametrize("scope", ["dynamic", "all"])
def test_finetuning_never_reads_the_evaluation_target(tiny_config_dict, scope):
    model, batch = finetune_model(tiny_config_dict, finetune_scope=scope)
    planted = batch[torch.arange(len(batch))]  # a copy whose evaluation targets are replaced
    planted.update(type(batch)({model.ITEM_ID: torch.randint(1, model.n_items, (len(batch),))}))
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(batch), model.full_sort_predict(planted), atol=0, rtol=0)


def window_losses(model, item_seq, item_seq_len, parameters):
    prefix_len, targets, is_pair = window_training_pairs(item_seq, item_seq_len, model.realtime_window_size)
    n_devices, n_pairs = targets.shape
    representation = model.backbone(item_seq.repeat_interleave(n_pairs, 0), prefix_len.flatten()).view(n_devices, n_pairs, -1)
    logits = model.classifier.forward_with_parameters(representation, parameters) @ model.backbone.item_embedding.weight.T
    losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return (losses.view(n_devices, n_pairs) * is_pair).sum(1), is_pair.any(1)


def test_finetuning_lowers_each_devices_own_window_loss(tiny_config_dict):
    model, batch = finetune_model(tiny_config_dict, finetune_lr=0.5)
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    n = len(item_seq)
    with torch.no_grad():
        start = [(w.expand(n, *w.shape), b.expand(n, *b.shape)) for w, b in zip(model.classifier.weight, model.classifier.bias)]
        before, has_pairs = window_losses(model, item_seq, item_seq_len, start)
        tuned = model.finetuned_parameters(item_seq, item_seq_len)
        after, _ = window_losses(model, item_seq, item_seq_len, tuned)
    assert has_pairs.sum() > 0
    assert bool((after[has_pairs] < before[has_pairs]).all())
    for device in (~has_pairs).nonzero().flatten():  # nothing to learn from: the global layers stay
        torch.testing.assert_close(tuned[0][0][device], model.classifier.weight[0])


def test_each_device_is_tuned_on_its_own_data_only(tiny_config_dict):
    model, batch = finetune_model(tiny_config_dict)
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        together = model.finetuned_parameters(item_seq, item_seq_len)
        alone = model.finetuned_parameters(item_seq[2:3], item_seq_len[2:3])
    assert_device_parameters_equal(alone, together, 2, atol=1e-5)


def test_finetune_runs_through_the_runner_for_every_backbone_training_nothing(tiny_config_dict, din_config_dict):
    for config_dict in (
        {**tiny_config_dict, "backbone": "GRU4Rec"},
        {**tiny_config_dict, "finetune_scope": "all"},
        din_config_dict,
    ):
        settings = {**config_dict, "cloud_checkpoint": layers_checkpoint(config_dict), "finetune_steps": 2}
        run = run_experiment(Config(model="Finetune", dataset="tiny", config_dict=settings))
        assert all(value >= 0 for value in run["result"]["test_result"].values())
        assert run["epochs"] == 0 and run["kept_start"]  # validated and tested as loaded
        assert run["result"]["best_valid_score"] == run["start_valid_score"]


def test_whole_model_sgd_follows_the_gradient_and_leaves_unreached_parameters():
    start = {"reached": torch.tensor([3.0, -2.0]), "unreached": torch.tensor([1.0])}
    tuned = finetune_all_parameters(start, lambda p: (p["reached"] ** 2).sum(), steps=2, lr=0.25)
    torch.testing.assert_close(tuned["reached"], torch.tensor([0.75, -0.5]))  # x <- x - 0.25 * 2x, twice
    assert torch.equal(tuned["unreached"], start["unreached"]) and torch.equal(start["reached"], torch.tensor([3.0, -2.0]))


def test_whole_model_finetuning_tunes_each_device_alone_and_moves_the_backbone(tiny_config_dict):
    model, batch = finetune_model(tiny_config_dict, finetune_scope="all", finetune_lr=0.5)
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad():
        together = model.finetuned_model_scores(item_seq[:4], item_seq_len[:4])
        alone = model.finetuned_model_scores(item_seq[2:3], item_seq_len[2:3])
        model.finetune_scope = "dynamic"
        layers_only = model.full_sort_predict(batch[torch.arange(4)])
        untuned = global_scores(model, item_seq[:4], item_seq_len[:4])
    torch.testing.assert_close(alone[0], together[2], atol=1e-5, rtol=0)
    assert together.shape == (4, model.n_items)
    assert not torch.allclose(together, layers_only, atol=1e-4)  # the backbone and item table were tuned too
    _, targets, is_pair = window_training_pairs(item_seq[:4], item_seq_len[:4], model.realtime_window_size)
    assert is_pair.any(1).sum() >= 2
    for device in is_pair.any(1).nonzero().flatten():  # each device's own window targets gained on the rest
        own = targets[device][is_pair[device]]
        gain = together[device] - untuned[device]
        assert gain[own].mean() > gain.mean() + 1e-3
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())  # copies only


def sgd_on_a_copy_of_the_device_model(model, item_seq, item_seq_len, steps, lr, tuned=("backbone.", "classifier.")):
    """The paper's whole-model baseline written out (with ``tuned=("classifier.",)``: the dynamic-layers one): SGD
    with torch.optim on a deep copy of the parameters named ``tuned``, over the device's own window pairs; returns
    the tuned copy's scores of its history."""
    device_model = copy.deepcopy(model).requires_grad_(True)  # the cloud model is loaded fixed; its copy learns
    optimizer = torch.optim.SGD([value for name, value in device_model.named_parameters() if name.startswith(tuned)], lr=lr)
    prefix_len, targets, is_pair = window_training_pairs(item_seq, item_seq_len, model.realtime_window_size)
    prefix_len, targets = prefix_len[0][is_pair[0]], targets[0][is_pair[0]]
    histories = cut_at_prefix(item_seq.expand(len(targets), -1), prefix_len)

    def scores(sequences, lengths):
        user_vector = device_model.classifier(device_model.backbone(sequences, lengths))
        return user_vector @ device_model.backbone.item_embedding.weight.T

    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(scores(histories, prefix_len), targets).backward()
        optimizer.step()
    with torch.no_grad():
        return scores(item_seq, item_seq_len)[0]


def test_whole_model_finetuning_is_sgd_on_a_copy_of_each_device_model(tiny_config_dict):
    model, batch = finetune_model(tiny_config_dict, finetune_scope="all", finetune_lr=0.5, finetune_steps=2)
    rows = batch[torch.arange(3)]
    item_seq, item_seq_len = rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN]
    assert bool((item_seq_len >= 2).all())  # every device has pairs to tune on
    with torch.no_grad():
        scores = model.full_sort_predict(rows)
        candidate_scores = model.predict(rows)
        one_row = model.predict(batch[torch.arange(1)])
    for device in range(3):
        expected = sgd_on_a_copy_of_the_device_model(model, item_seq[device : device + 1], item_seq_len[device : device + 1], 2, 0.5)
        torch.testing.assert_close(scores[device], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(candidate_scores, scores[torch.arange(3), rows[model.ITEM_ID]])
    assert one_row.shape == (1,)


def test_whole_model_finetuning_leaves_a_device_without_pairs_untuned(tiny_config_dict):
    model, batch = finetune_model(tiny_config_dict, finetune_scope="all", finetune_lr=0.5)
    one_item = batch[model.ITEM_SEQ][:1] * (torch.arange(batch[model.ITEM_SEQ].size(1)) < 1)
    with torch.no_grad():
        scores = model.finetuned_model_scores(one_item, torch.tensor([1]))
        untuned = global_scores(model, one_item, torch.tensor([1]))
    torch.testing.assert_close(scores, untuned, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scope", ["dynamic", "all"])
def test_the_backbone_never_sees_items_past_the_history_it_is_given(tiny_config_dict, scope):
    """STAMP averages every position (NextItNet, CORE read past the length too): each fine-tuning pair's
    history must be cut at its prefix, or the pair's own target would be read."""
    model, batch = finetune_model(tiny_config_dict, backbone="STAMP", finetune_scope=scope)
    shown = []
    model.backbone.register_forward_pre_hook(lambda module, args: shown.append(args))
    with torch.no_grad():
        model.full_sort_predict(batch[torch.arange(4)])
    assert any(len(item_seq) > 4 or len(item_seq) < 4 for item_seq, _ in shown)  # fine-tuning pairs were encoded
    for item_seq, item_seq_len in shown:
        past_history = torch.arange(item_seq.size(1)) >= item_seq_len.unsqueeze(1)
        assert (item_seq[past_history] == 0).all()


# --- The Layers checkpoint it starts from, and its own ---------------------------------------------------------


@pytest.fixture
def trained_layers(tiny_config_dict):
    """A Layers model trained one epoch (DUET with duet_inference: global), and its best checkpoint."""
    run = run_experiment(Config(model="DUET", dataset="tiny", config_dict={**tiny_config_dict, "duet_inference": "global"}))
    return run["trainer"].model, run["trainer"].saved_model_file


def test_finetune_starts_from_a_trained_layers_checkpoint_and_tunes_each_device_by_sgd(tiny_config_dict, trained_layers):
    layers, checkpoint = trained_layers
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert any(name.startswith("generator.") for name in saved)  # a Layers model has an (untrained) generator too
    settings = {**tiny_config_dict, "cloud_checkpoint": checkpoint, "finetune_steps": 3, "finetune_lr": 0.5}
    _, (train_data, _, _), model = build_pipeline(settings, model="Finetune")
    assert set(model.state_dict()) == {name for name in saved if name.startswith(("backbone.", "classifier."))}
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert not any(parameter.requires_grad for parameter in model.parameters())  # the cloud model stays fixed
    model.eval()
    rows = next(iter(train_data))[torch.arange(3)]
    item_seq, item_seq_len = rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        scores = model.full_sort_predict(rows)
        torch.testing.assert_close(model.predict(rows), scores[torch.arange(3), rows[model.ITEM_ID]])
    for device in range(3):
        one = slice(device, device + 1)
        expected = sgd_on_a_copy_of_the_device_model(layers, item_seq[one], item_seq_len[one], 3, 0.5, ("classifier.",))
        torch.testing.assert_close(scores[device], expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(scores, global_scores(model, item_seq, item_seq_len), atol=1e-4)  # it did tune


def test_a_finetune_run_saves_a_checkpoint_that_loads_into_finetune_again(tiny_config_dict, trained_layers):
    _, checkpoint = trained_layers
    settings = {**tiny_config_dict, "cloud_checkpoint": checkpoint, "finetune_steps": 2}
    run = run_experiment(Config(model="Finetune", dataset="tiny", config_dict=settings))
    own = run["trainer"].saved_model_file  # the run tested it (load_best_model)
    assert os.path.basename(own).startswith("Finetune-")
    _, _, again = build_pipeline({**settings, "cloud_checkpoint": own}, model="Finetune")
    for name, value in again.state_dict().items():
        assert torch.equal(value, run["trainer"].model.state_dict()[name]), name


def test_finetune_refuses_a_file_that_is_no_cloud_model(tiny_config_dict):
    plain = run_experiment(Config(model="SASRec", dataset="tiny", config_dict=tiny_config_dict))["trainer"].saved_model_file
    with pytest.raises(CheckpointError, match=r"holds a 'SASRec' model, not the 'DUET' or 'Finetune' cloud_checkpoint"):
        build_pipeline({**tiny_config_dict, "cloud_checkpoint": plain}, model="Finetune")
    other = layers_checkpoint({**tiny_config_dict, "backbone": "GRU4Rec"})
    with pytest.raises(CheckpointError, match=r"was trained with backbone 'GRU4Rec', not 'SASRec'"):
        build_pipeline({**tiny_config_dict, "cloud_checkpoint": other}, model="Finetune")
