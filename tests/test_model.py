"""Behaviour of the DUET model: registration and gradients, batch independence, the real-time window,
parameter counts, the generated-vs-materialised equivalence and the inference switch."""

import pytest
import torch
from conftest import assert_device_parameters_equal, build_pipeline

from recbole_duet.model.layers import realtime_window

pytestmark = pytest.mark.kernel_sensitive


def one_batch(loader):
    return next(iter(loader))


@pytest.fixture(
    params=[
        {"generator_rank": 0},
        {"generator_rank": 4},
        {"generator_input": "backbone"},
        {"generator_input": "backbone", "backbone": "GRU4Rec"},
        {"backbone": "GRU4Rec"},
        {"head_encoder": "attention"},
        {"head_encoder": "attention", "backbone": "GRU4Rec"},
    ],
    ids=["full", "rank4", "states", "gru4rec-states", "gru4rec", "attention", "gru4rec-attention"],
)
def duet(request, tiny_config_dict):
    config, loaders, model = build_pipeline({**tiny_config_dict, **request.param})
    return model, one_batch(loaders[0])


def generator_parameters(model):
    modules = [model.generator, model.classifier] + ([model.stabilizer] if model.stabilizer is not None else [])
    return [(name, param) for module in modules for name, param in module.named_parameters()]


def test_every_generator_and_adapter_weight_is_registered_and_receives_gradient(duet):
    model, batch = duet
    model.train()
    loss_ppg, loss_umn = model.calculate_loss(batch)
    (loss_ppg + loss_umn).backward()
    state_keys = set(model.state_dict())
    named = generator_parameters(model)
    assert len(named) >= 10
    for name, param in named:
        assert param.requires_grad, name
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {name}"
    registered = {name for name, _ in model.named_parameters()}
    for prefix, module in [("generator.", model.generator), ("stabilizer.", model.stabilizer)]:
        for name, _ in module.named_parameters():
            assert prefix + name in registered and prefix + name in state_keys


def test_generated_parameters_do_not_depend_on_the_rest_of_the_batch(duet):
    model, batch = duet
    model.eval()
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        in_batch = model.personalised_parameters(item_seq, item_seq_len)
        reordered = torch.flip(torch.arange(len(item_seq)), dims=[0])
        in_other_batch = model.personalised_parameters(item_seq[reordered], item_seq_len[reordered])
        for device in [0, 3, len(item_seq) - 1]:
            alone = model.personalised_parameters(item_seq[device : device + 1], item_seq_len[device : device + 1])
            assert_device_parameters_equal(alone, in_batch, device)
            assert_device_parameters_equal(alone, in_other_batch, int((reordered == device).nonzero()))


def test_generated_layers_equal_running_the_materialised_payload(duet):
    model, batch = duet
    model.eval()
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        representation = model.backbone(item_seq, item_seq_len)
        generated = model.generate(item_seq, item_seq_len)
        fused = model.classifier(representation, generated)
        payload = model.classifier.personalised_parameters(generated)
        explicit = model.classifier.forward_with_parameters(representation, payload)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    assert payload[0][0].shape == (len(item_seq), 16, 16) and payload[0][1].shape == (len(item_seq), 16)


def test_training_starts_close_to_the_global_classifier(duet):
    """Scaled initialisation: the generated update is a small correction, not the authors' std-5 noise."""
    model, batch = duet
    model.eval()
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        for layer, (weight, _) in enumerate(model.personalised_parameters(item_seq, item_seq_len)):
            update = weight - model.classifier.weight[layer]
            assert update.norm(dim=(1, 2)).max() < 0.5 * model.classifier.weight[layer].norm()


def expected_generator_size(item_dim, dim, n_layers, hidden, rank, stabilizer, encoder="gru", window=4):
    """The documented formula (README, 'Generator size'); ``encoder``: gru, attention or backbone (pooled states)."""
    head_encoder = {
        "gru": 3 * hidden * item_dim + 3 * hidden * hidden + 6 * hidden,
        "attention": window * item_dim + item_dim * hidden + 2 * hidden,
        "backbone": item_dim * hidden + hidden,
    }[encoder]
    weight_decoder = hidden * dim * dim + dim * dim if rank == 0 else hidden * rank * rank + rank * rank + 2 * dim * rank
    branch = (hidden * hidden + hidden) + (hidden * dim + dim) + weight_decoder
    adapter = (item_dim * hidden + hidden) + (hidden * n_layers * dim + n_layers * dim)
    return head_encoder + n_layers * branch + (adapter if stabilizer else 0)


ENCODER_SETTINGS = {
    "gru": {},
    "attention": {"head_encoder": "attention"},
    "backbone": {"generator_input": "backbone"},
}


@pytest.mark.parametrize("encoder", sorted(ENCODER_SETTINGS))
@pytest.mark.parametrize("stabilizer", [True, False])
def test_generator_size_matches_formula_and_low_rank_is_smaller(tiny_config_dict, stabilizer, encoder):
    sizes = {}
    for rank in (0, 4):
        overrides = {"generator_rank": rank, "stabilizer": stabilizer, "hidden_size": 32, "duet_layers": 3}
        _, _, model = build_pipeline({**tiny_config_dict, **overrides, **ENCODER_SETTINGS[encoder]})
        modules = [model.generator] + ([model.stabilizer] if stabilizer else [])
        sizes[rank] = sum(p.numel() for module in modules for p in module.parameters())
        assert sizes[rank] == expected_generator_size(32, 32, 3, 8, rank, stabilizer, encoder)
    assert sizes[4] < sizes[0]


def test_realtime_window_is_the_last_real_items():
    item_seq = torch.tensor([[5, 6, 7, 8, 9, 0], [3, 4, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]])
    window, window_len = realtime_window(item_seq, torch.tensor([5, 2, 1]), 3)
    assert window.tolist() == [[7, 8, 9], [3, 4, 0], [2, 0, 0]]
    assert window_len.tolist() == [3, 2, 1]
    longer_than_history, lengths = realtime_window(item_seq, torch.tensor([5, 2, 1]), 8)
    assert longer_than_history.tolist()[0] == [5, 6, 7, 8, 9, 0, 0, 0] and lengths.tolist() == [5, 2, 1]
    states = item_seq.float().unsqueeze(-1).expand(-1, -1, 2) + 0.5  # per-position states, non-zero on padding
    state_window, _ = realtime_window(states, torch.tensor([5, 2, 1]), 3)
    assert state_window.tolist() == [[[7.5] * 2, [8.5] * 2, [9.5] * 2], [[3.5] * 2, [4.5] * 2, [0] * 2], [[2.5] * 2, [0] * 2, [0] * 2]]


def test_generation_reads_only_the_realtime_window(tiny_config_dict):
    _, _, model = build_pipeline({**tiny_config_dict, "realtime_window": 3})
    model.eval()
    history = torch.tensor([[4, 5, 6, 7, 8, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([5, 1])
    older_changed = history.clone()
    older_changed[0, :2] = torch.tensor([20, 21])
    recent_changed = history.clone()
    recent_changed[0, 4] = 22
    with torch.no_grad():
        base = model.personalised_parameters(history, lengths)[0][0]
        older = model.personalised_parameters(older_changed, lengths)[0][0]
        recent = model.personalised_parameters(recent_changed, lengths)[0][0]
    torch.testing.assert_close(base, older, atol=0, rtol=0)
    assert not torch.allclose(base[0], recent[0])
    torch.testing.assert_close(base[1], recent[1], atol=1e-6, rtol=0)  # the length-1 history works alone


def test_global_inference_ignores_the_generator(tiny_config_dict):
    _, loaders, model = build_pipeline({**tiny_config_dict, "duet_inference": "global"})
    model.eval()
    batch = one_batch(loaders[0])
    with torch.no_grad():
        before = model.full_sort_predict(batch)
        for param in model.generator.parameters():
            param.add_(1.0)
        assert torch.equal(before, model.full_sort_predict(batch))
        model.inference = "generated"
        assert not torch.allclose(before, model.full_sort_predict(batch))


def test_the_cloud_model_alone_scores_as_duet_with_its_global_layers(tiny_config_dict):
    """CloudModel is the cloud model both methods start from: built on its own with DUET's backbone and global
    layers, its scores are DUET's under ``duet_inference: global``."""
    from recbole_duet.model.cloud import CloudModel

    config, loaders, duet = build_pipeline({**tiny_config_dict, "duet_inference": "global"})
    cloud = CloudModel(config, loaders[0]._dataset)
    for name, module in cloud.cloud_modules().items():
        module.load_state_dict(getattr(duet, name).state_dict())
    with torch.no_grad():
        for param in duet.classifier.parameters():
            param.add_(0.1 * torch.randn_like(param))  # global layers that are not the identity
        cloud.classifier.load_state_dict(duet.classifier.state_dict())
    duet.eval(), cloud.eval()
    batch = one_batch(loaders[0])
    with torch.no_grad():
        torch.testing.assert_close(cloud.full_sort_predict(batch), duet.full_sort_predict(batch), atol=0, rtol=0)
        torch.testing.assert_close(cloud.predict(batch), duet.predict(batch), atol=0, rtol=0)
        backbone_only = duet.scoring.full_sort(duet.represent(*duet.device_inputs(batch))[0])
        assert not torch.allclose(cloud.full_sort_predict(batch), backbone_only)


def test_predict_agrees_with_full_sort_predict(duet):
    model, batch = duet
    model.eval()
    with torch.no_grad():
        full = model.full_sort_predict(batch)
        pointwise = model.predict(batch)
    rows = torch.arange(len(full))
    torch.testing.assert_close(pointwise, full[rows, batch[model.ITEM_ID]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["SASRec", "GRU4Rec"])
def test_backbone_states_are_the_ones_the_user_vector_is_read_from(tiny_config_dict, backbone):
    """``generator_input: backbone`` reads the backbone's per-position states of the very same forward pass."""
    _, loaders, model = build_pipeline({**tiny_config_dict, "generator_input": "backbone", "backbone": backbone})
    model.eval()
    batch = one_batch(loaders[0])
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        representation, states = model.represent(item_seq, item_seq_len)
        assert states.shape == (*item_seq.shape, representation.size(-1))
        torch.testing.assert_close(states[torch.arange(len(item_seq)), item_seq_len - 1], representation)
        window, window_len = realtime_window(states, item_seq_len, model.realtime_window_size)
        expected = model.classifier(representation, model._generate(window, window_len))
        torch.testing.assert_close(model.forward(item_seq, item_seq_len), expected)


@pytest.mark.parametrize("ppg_scope", ["all", "generator"])
def test_the_backbone_runs_once_per_batch_when_the_generator_reads_its_states(tiny_config_dict, ppg_scope):
    """The states come from the very pass that gives the user vectors (with dropout, a second pass would differ)."""
    settings = {**tiny_config_dict, "generator_input": "backbone", "umn_weight": 1.0, "ppg_scope": ppg_scope}
    _, loaders, model = build_pipeline(settings)
    batch = one_batch(loaders[0])
    calls = []
    model.backbone.register_forward_hook(lambda *_: calls.append(1))
    model.calculate_loss(batch)
    with torch.no_grad():
        model.eval()
        model.full_sort_predict(batch)
    assert len(calls) == 2


@pytest.mark.parametrize("generator_input", ["window", "backbone"])
def test_generated_layers_pass_gradient_back_to_what_the_generator_reads(tiny_config_dict, generator_input):
    """Under ``ppg_scope: all`` L_ppg trains the cloud model through the generator's input too: the window's item
    embeddings (or the backbone states) are not detached, unless ``fixed_inputs`` asks for it."""
    _, loaders, model = build_pipeline({**tiny_config_dict, "generator_input": generator_input})
    batch = one_batch(loaders[0])
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    embedding = model.backbone.item_embedding.weight
    for options, reaches in (({}, True), ({"fixed_inputs": True}, False)):  # by default the inputs are not fixed
        embedding.grad = None
        layers = model.generate(item_seq, item_seq_len, **options)
        sum(layer.bias_delta.sum() for layer in layers).backward()
        assert (embedding.grad is not None and embedding.grad.abs().sum() > 0) == reaches


@pytest.mark.parametrize("head_encoder", ["gru", "attention"])
def test_window_encoder_code_ignores_the_padding_after_the_window(tiny_config_dict, head_encoder):
    _, _, model = build_pipeline({**tiny_config_dict, "head_encoder": head_encoder})
    window = torch.randn(2, 3, 16)
    padded = torch.cat([window, torch.randn(2, 5, 16)], dim=1)  # anything may sit in the padding slots
    window_len = torch.tensor([3, 1])
    with torch.no_grad():
        torch.testing.assert_close(model.generator.encode(padded, window_len), model.generator.encode(window, window_len))
        assert not torch.allclose(model.generator.encode(window, torch.tensor([2, 1]))[0], model.generator.encode(window, window_len)[0])


@pytest.mark.parametrize("stabilizer", [False, True])
def test_update_dropout_drops_whole_output_units_of_each_devices_update_in_training_only(tiny_config_dict, stabilizer):
    _, loaders, model = build_pipeline({**tiny_config_dict, "update_dropout": 0.5, "stabilizer": stabilizer})
    batch = one_batch(loaders[0])
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    torch.manual_seed(0)
    with torch.no_grad():
        model.eval()
        undropped = model.generate(item_seq, item_seq_len)
        model.train()
        dropped = model.generate(item_seq, item_seq_len)
    assert len(dropped) == model.classifier.weight.size(0)
    for train_layer, eval_layer in zip(dropped, undropped):
        eval_gate = torch.ones_like(eval_layer.bias_delta) if eval_layer.gate is None else eval_layer.gate
        assert eval_layer.gate is None or stabilizer
        scale = train_layer.gate / eval_gate  # per device and output unit: dropped (0) or kept and doubled (2)
        assert scale.shape == eval_layer.bias_delta.shape
        assert torch.all((scale == 0) | torch.isclose(scale, torch.full_like(scale, 2.0)))
        assert 0.3 < (scale == 0).float().mean() < 0.7
        assert not torch.equal(scale[0], scale[1])  # each device draws its own mask
        torch.testing.assert_close(train_layer.bias_delta, eval_layer.bias_delta)


def test_without_update_dropout_training_adds_no_mask(tiny_config_dict):
    _, loaders, model = build_pipeline({**tiny_config_dict, "stabilizer": False})
    batch = one_batch(loaders[0])
    model.train()
    assert model.update_dropout == 0
    assert all(layer.gate is None for layer in model.generate(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]))


def test_a_dropped_unit_is_answered_by_the_global_layer_alone(tiny_config_dict):
    """Dropping every unit (p close to 1 leaves almost none) makes training's user vectors the global layers'."""
    _, loaders, model = build_pipeline({**tiny_config_dict, "update_dropout": 0.999999, "stabilizer": False})
    batch = one_batch(loaders[0])
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in model.generator.parameters():
            layer.add_(0.5)  # a large generated update, so that keeping it would show
        representation, _ = model.represent(item_seq, item_seq_len)
        torch.testing.assert_close(
            model.classifier(representation, model.generate(item_seq, item_seq_len)), model.classifier(representation)
        )


def build_trainer(config_dict):
    from recbole_duet.training.trainer import get_trainer

    config, loaders, model = build_pipeline(config_dict)
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model), one_batch(loaders[0])


def test_the_generator_and_adapter_learn_at_their_own_scaled_rate(tiny_config_dict):
    trainer, _ = build_trainer({**tiny_config_dict, "generator_lr_scale": 0.1, "learning_rate": 0.002})
    model = trainer.model
    rest, generating = trainer.optimizer.param_groups
    assert rest["lr"] == 0.002 and generating["lr"] == pytest.approx(0.0002)
    expected = {id(p) for module in (model.generator, model.stabilizer) for p in module.parameters()}
    assert {id(p) for p in generating["params"]} == expected
    assert len(rest["params"]) + len(generating["params"]) == len(list(model.parameters()))
    assert {id(p) for p in rest["params"]} == {id(p) for p in model.parameters()} - expected
    rebuilt = trainer._build_optimizer(learning_rate=0.5)  # RecBole's own keyword for another rate
    assert [group["lr"] for group in rebuilt.param_groups] == [0.5, pytest.approx(0.05)]


def test_at_scale_one_the_optimizer_is_recboles_single_group(tiny_config_dict):
    trainer, _ = build_trainer(tiny_config_dict)
    assert trainer.model.generator_lr_scale == 1
    (group,) = trainer.optimizer.param_groups
    assert [id(p) for p in group["params"]] == [id(p) for p in trainer.model.parameters()]


def test_an_optimizer_step_moves_the_generator_by_the_scaled_rate(tiny_config_dict):
    """Adam's first step moves each weight by about its learning rate: the generator's by a tenth of it."""
    moved = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(0)
        trainer, batch = build_trainer({**tiny_config_dict, "generator_lr_scale": scale, "stabilizer": False})
        model = trainer.model
        model.train()
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        torch.manual_seed(1)
        sum(model.calculate_loss(batch)).backward()
        trainer.optimizer.step()
        moved[scale] = {name: (p.detach() - before[name]).abs().max().item() for name, p in model.named_parameters()}
    decoder = "generator.branches.0.weight_decoder.core_decoder.weight"
    assert moved[0.1][decoder] == pytest.approx(0.1 * moved[1.0][decoder], rel=0.05)
    assert moved[0.1]["classifier.weight"] == pytest.approx(moved[1.0]["classifier.weight"], rel=0.05)
