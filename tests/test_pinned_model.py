"""Behaviours of the DUET models pinned against hand computations (issue 12): each test here was seen to fail
with a small, plausible bug planted in the code it covers.

BPR's direction, the exact scaling of ``L_umn`` by ``umn_weight``, DIN's global / generated / fine-tuned
scoring, the Stable Weight Adapter's masking and gating, the generator's rank cap and padding independence,
and the real-time window of a full history shorter than the window.
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import build_pipeline, finetune_pipeline
from torch import nn

from recbole_duet.model.din_head import item_feature_embedding, normalise_with_running_statistics
from recbole_duet.model.finetune import seeded_negatives, window_training_pairs
from recbole_duet.model.generator import LayerBranch, PooledStateEncoder, StableWeightAdapter, WindowAttentionEncoder
from recbole_duet.model.layers import FullDelta, GeneratedLayer, LowRankDelta, ResidualClassifier, realtime_window


def first_batch(loaders):
    return next(iter(loaders[0]))


# --- BPR -------------------------------------------------------------------------------------------------


@pytest.fixture
def bpr(tiny_config_dict):
    _, loaders, model = build_pipeline({**tiny_config_dict, "loss_type": "BPR", "umn_weight": 1.0})  # both losses
    model.eval()  # no dropout: the same batch gives the same loss
    return model, first_batch(loaders)


def bpr_scores(model, batch, generated=True):
    """``(positive, negative)`` scores of each row under the generated (or the global) layers."""
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    representation = model.backbone(item_seq, item_seq_len)
    layers = model.generate(item_seq, item_seq_len) if generated else None
    user_vector = model.classifier(representation, layers)
    items = model.backbone.item_embedding
    positive = (user_vector * items(batch[model.POS_ITEM_ID])).sum(-1)
    return positive, (user_vector * items(batch[model.NEG_ITEM_ID])).sum(-1)


def test_bpr_losses_are_minus_log_sigmoid_of_positive_minus_negative(bpr):
    model, batch = bpr
    loss_ppg, loss_umn = model.calculate_loss(batch)
    for loss, generated in ((loss_ppg, True), (loss_umn, False)):
        positive, negative = bpr_scores(model, batch, generated)
        torch.testing.assert_close(loss, -F.logsigmoid(positive - negative).mean(), atol=1e-5, rtol=1e-5)


def test_bpr_training_lowers_the_loss_and_ranks_the_positive_above_the_negative(bpr):
    model, batch = bpr
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    with torch.no_grad():
        loss_before = sum(model.calculate_loss(batch)).item()
        positive, negative = bpr_scores(model, batch)
    assert (positive > negative).float().mean() < 0.8  # untrained: no better than chance
    for _ in range(30):
        optimizer.zero_grad()
        sum(model.calculate_loss(batch)).backward()
        optimizer.step()
    with torch.no_grad():
        loss_after = sum(model.calculate_loss(batch)).item()
        positive, negative = bpr_scores(model, batch)
    assert loss_after < 0.5 * loss_before
    assert (positive > negative).float().mean() >= 0.95


def test_residual_dynamic_layers_apply_the_activation_inside_every_layer_but_the_last():
    torch.manual_seed(0)
    classifier = ResidualClassifier(4, 3, "tanh")
    with torch.no_grad():
        classifier.weight.normal_(0.0, 0.5)
        classifier.bias.normal_(0.0, 0.5)
    x = torch.randn(5, 4)
    expected = x
    for layer in range(3):
        out = expected @ classifier.weight[layer].T + classifier.bias[layer]
        expected = expected + (torch.tanh(out) if layer < 2 else out)
    torch.testing.assert_close(classifier(x), expected)
    assert repr(classifier) == "ResidualClassifier(n_layers=3, dim=4)"


# --- umn_weight ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", ["tiny_config_dict", "din_config_dict"], ids=["sasrec", "din"])
def test_umn_weight_scales_the_second_loss_exactly(request, settings):
    config_dict = {**request.getfixturevalue(settings), "dropout_prob": 0.0, "ppg_scope": "all"}  # L_ppg trains all
    losses = {}
    for weight in (0.0, 0.5, 1.0):
        _, loaders, model = build_pipeline({**config_dict, "umn_weight": weight})
        model.eval()  # DIN's batch norm: the same statistics for each model
        batch = first_batch(loaders)
        with torch.no_grad():
            losses[weight] = [loss.item() for loss in model.calculate_loss(batch)]
            model.inference = "global"  # the UMN alone: its one loss is L_umn
            umn_loss = model.calculate_loss(batch)
    assert umn_loss.dim() == 0 and losses[1.0][1] == pytest.approx(umn_loss.item(), rel=1e-6)
    assert losses[0.0][0] == losses[0.5][0] == losses[1.0][0]  # the same model, L_ppg untouched
    assert losses[0.5][1] == pytest.approx(0.5 * losses[1.0][1], rel=1e-6) and losses[0.0][1] == 0.0


def global_layer_gradients(model, loss):
    parameters = [model.classifier.weight, model.classifier.bias]
    return torch.autograd.grad(loss, parameters, allow_unused=True, retain_graph=True)


def test_umn_weight_zero_leaves_the_global_layers_to_l_ppg(tiny_config_dict):
    for weight, umn_reaches_them in ((0.0, False), (1.0, True)):
        _, loaders, model = build_pipeline({**tiny_config_dict, "umn_weight": weight, "ppg_scope": "all"})
        model.eval()
        loss_ppg, loss_umn = model.calculate_loss(first_batch(loaders))
        total, ppg_alone = global_layer_gradients(model, loss_ppg + loss_umn), global_layer_gradients(model, loss_ppg)
        same = all(torch.allclose(a, b, atol=1e-9, rtol=0) for a, b in zip(total, ppg_alone))
        assert same != umn_reaches_them


def test_umn_weight_zero_skips_the_umns_scoring_pass(tiny_config_dict, monkeypatch):
    """The term would be multiplied by zero: its full-catalogue pass is not computed at all (issue 8, speed)."""
    for weight, passes in ((0.0, 1), (1.0, 2)):
        _, loaders, model = build_pipeline({**tiny_config_dict, "umn_weight": weight, "ppg_scope": "all"})
        scored = []
        full_sort = model.scoring.full_sort
        monkeypatch.setattr(model.scoring, "full_sort", lambda *args: scored.append(1) or full_sort(*args))
        model.calculate_loss(first_batch(loaders))
        assert len(scored) == passes


# --- ppg_scope ---------------------------------------------------------------------------------------------


def gradients_by_part(model, loss):
    """``{"generating": [...], "cloud": [...]}``: whether each parameter of that part gets a nonzero gradient."""
    named = list(model.named_parameters())
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True, retain_graph=True)
    parts = {"generating": [], "cloud": []}
    for (name, _), grad in zip(named, grads):
        part = "generating" if name.startswith(("generator.", "stabilizer.")) else "cloud"
        parts[part].append(grad is not None and bool(grad.abs().sum() > 0))
    return parts


@pytest.mark.parametrize("loss_type", ["CE", "BPR"])
@pytest.mark.parametrize("generator_input", ["window", "backbone"])
def test_ppg_scope_generator_keeps_l_ppg_out_of_the_cloud_model(tiny_config_dict, loss_type, generator_input):
    config_dict = {**tiny_config_dict, "loss_type": loss_type, "generator_input": generator_input, "dropout_prob": 0.0}
    losses = {}
    for scope in ("all", "generator"):
        _, loaders, model = build_pipeline({**config_dict, "ppg_scope": scope})
        model.eval()
        loss_ppg, loss_umn = model.calculate_loss(first_batch(loaders))
        losses[scope] = (loss_ppg.item(), loss_umn.item())
        ppg, umn = gradients_by_part(model, loss_ppg), gradients_by_part(model, loss_umn)
        assert not any(umn["generating"]) and any(umn["cloud"])  # L_umn never trains the generator
        if scope == "generator":
            assert all(ppg["generating"]) and not any(ppg["cloud"])
        else:
            assert any(ppg["cloud"])
    assert losses["all"] == pytest.approx(losses["generator"], rel=1e-6)  # the same losses, only the gradients differ


# --- DIN: which MLP scores, and what fine-tuning learns ----------------------------------------------------


def test_din_global_inference_scores_exactly_as_recboles_din_with_the_same_weights(din_config_dict):
    _, loaders, duet = build_pipeline({**din_config_dict, "duet_inference": "global"})
    plain_config = {key: value for key, value in din_config_dict.items() if key != "backbone"}
    _, _, din = build_pipeline({**plain_config, "seed": 99}, model="DIN")
    with torch.no_grad():  # make the weights DUET's own, not an initialisation both happen to share
        for parameter in duet.backbone.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    din.load_state_dict(duet.backbone.state_dict())
    duet.eval(), din.eval()
    batch = first_batch(loaders)[:6]
    n_items = duet.n_items
    pairs = batch.repeat_interleave(n_items)
    pairs.update(type(batch)({duet.ITEM_ID: torch.arange(n_items).repeat(len(batch))}))
    with torch.no_grad():
        torch.testing.assert_close(duet.predict(batch), din.predict(batch), atol=1e-6, rtol=0)
        expected = din.predict(pairs).view(len(batch), n_items)
        torch.testing.assert_close(duet.full_sort_predict(batch), expected, atol=1e-6, rtol=0)


def randomise_batch_norm_statistics(module):
    """Running statistics and affine weights far from a fresh layer's (mean 0, var 1, weight 1, bias 0)."""
    with torch.no_grad():
        for batch_norm in (m for m in module.modules() if isinstance(m, nn.BatchNorm1d)):
            batch_norm.running_mean.uniform_(-1, 1)
            batch_norm.running_var.uniform_(0.5, 2)
            batch_norm.weight.uniform_(0.5, 2)
            batch_norm.bias.uniform_(-1, 1)


def test_running_statistics_normalise_as_an_evaluating_batch_norm():
    torch.manual_seed(0)
    batch_norm = nn.BatchNorm1d(5, eps=0.1)
    randomise_batch_norm_statistics(batch_norm)
    x = torch.randn(4, 3, 5)
    expected = batch_norm.eval()(x.reshape(12, 5)).view(4, 3, 5)
    torch.testing.assert_close(normalise_with_running_statistics(batch_norm, x), expected)


def test_din_generated_mlp_without_an_update_is_dins_own_mlp(din_config_dict):
    _, loaders, model = build_pipeline(din_config_dict)
    with torch.no_grad():  # biases and weights away from their initialisation (biases start at zero)
        for parameter in model.backbone.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    randomise_batch_norm_statistics(model.backbone)
    model.eval()
    batch = first_batch(loaders)
    user, item_seq, item_seq_len, items = model._inputs(batch)
    no_update = [
        GeneratedLayer(FullDelta(torch.zeros(len(user), out_dim, in_dim)), torch.zeros(len(user), out_dim))
        for out_dim, in_dim in model.head.layer_shapes
    ]
    with torch.no_grad():
        global_logit, mlp_input = model.tap(user, item_seq, item_seq_len, items)
        torch.testing.assert_close(model.head(mlp_input, no_update), global_logit, atol=1e-6, rtol=1e-6)


def test_din_generator_reads_the_windows_item_features_and_zeros_its_padding(din_config_dict, monkeypatch):
    _, loaders, model = build_pipeline(din_config_dict)
    model.eval()
    user, item_seq, item_seq_len = model.device_inputs(first_batch(loaders))
    read = []
    monkeypatch.setattr(model, "_generate", lambda window_emb, window_len, has_window: read.append((window_emb, window_len)))
    model.generate(user, item_seq, item_seq_len)
    (window_emb, window_len), = read
    window, expected_len = realtime_window(item_seq, item_seq_len, model.realtime_window_size)
    assert torch.equal(window_len, expected_len) and bool((window == 1).any())  # item 1 is among the windows
    expected = item_feature_embedding(model.backbone, user, window)
    is_real = (window > 0).unsqueeze(-1)
    torch.testing.assert_close(window_emb, torch.where(is_real, expected, torch.zeros_like(expected)))


def test_din_generated_and_global_scores_differ_after_training(din_config_dict):
    _, loaders, model = build_pipeline(din_config_dict)
    batch = first_batch(loaders)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(10):
        optimizer.zero_grad()
        sum(model.calculate_loss(batch)).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        generated = model.predict(batch)
        model.inference = "global"
        global_scores = model.predict(batch)
    assert (generated - global_scores).abs().mean() > 1e-3


def test_din_finetuning_raises_the_clicked_items_score_and_lowers_the_drawn_negatives(din_config_dict):
    config_dict = {**din_config_dict, "finetune_steps": 10, "finetune_lr": 2.0}
    _, loaders, model = finetune_pipeline(config_dict)
    model.eval()
    batch = first_batch(loaders)[:16]
    user, item_seq, item_seq_len = model.device_inputs(batch)
    prefix_len, targets, is_pair = window_training_pairs(item_seq, item_seq_len, model.realtime_window_size)
    negatives = seeded_negatives([user, item_seq, item_seq_len], targets.size(1), model.n_items, config_dict["seed"])
    tuned = model.finetuned_parameters(user, item_seq, item_seq_len)
    device, pair = is_pair.nonzero(as_tuple=True)  # every (device, window pair), scored as its own row
    row_parameters = [(weight[device], bias[device]) for weight, bias in tuned]
    gains = {}
    with torch.no_grad():
        for name, items in (("click", targets), ("negative", negatives)):
            global_logit, mlp_input = model.tap(user[device], item_seq[device], prefix_len[device, pair], items[device, pair])
            gains[name] = model.head.forward_with_parameters(mlp_input, row_parameters) - global_logit
    assert len(device.unique()) >= 8
    assert gains["click"].mean() > 0.2 and gains["negative"].mean() < -0.2
    assert (gains["click"] > 0).float().mean() > 0.8 and (gains["negative"] < 0).float().mean() > 0.75


# --- Stable Weight Adapter -------------------------------------------------------------------------------


def pad_with_noise(window, window_len, slots):
    """``window`` ``[B, W, d]`` with every slot from its row's length on, up to ``slots``, random."""
    padded = torch.randn(window.size(0), slots, window.size(2))
    is_real = torch.arange(slots) < window_len.unsqueeze(1)
    padded[:, : window.size(1)][is_real[:, : window.size(1)]] = window[is_real[:, : window.size(1)]]
    return padded


def test_adapter_gates_do_not_depend_on_the_padding_after_a_short_window():
    torch.manual_seed(0)
    adapter = StableWeightAdapter(6, [5, 3], 4)
    nn.init.normal_(adapter.gate.weight, std=1.0)  # trained-size gates, not the near-constant initial ones
    window, window_len = torch.randn(3, 3, 6), torch.tensor([3, 2, 1])
    gates = {slots: adapter(pad_with_noise(window, window_len, slots), window_len) for slots in (10, 20)}
    for short, long in zip(gates[10], gates[20]):
        torch.testing.assert_close(short, long, atol=1e-6, rtol=0)
    assert gates[10][0].shape == (3, 5) and gates[10][1].shape == (3, 3)
    other = adapter(pad_with_noise(torch.randn(3, 3, 6), window_len, 10), window_len)
    assert not torch.allclose(other[0], gates[10][0], atol=1e-3)  # the real items do count


def random_delta(kind, devices, out_dim, in_dim):
    if kind == "full":
        return FullDelta(torch.randn(devices, out_dim, in_dim))
    return LowRankDelta(torch.randn(out_dim, 2), torch.randn(devices, 2, 2), torch.randn(2, in_dim))


def test_adapter_gates_are_the_scaled_self_similarity_pooled_over_the_real_items():
    adapter = StableWeightAdapter(2, [2, 1], 2)
    with torch.no_grad():
        adapter.transform.weight.copy_(torch.eye(2))
        adapter.transform.bias.zero_()
        adapter.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        adapter.gate.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
    window = torch.tensor([[[1.0, 2.0], [-1.0, 0.5], [7.0, 7.0]]])  # two real items, then padding
    keys = torch.tanh(window[0, :2])
    attention = torch.softmax(keys @ keys.T / 2**0.5, dim=-1)  # each real item over the real items
    pooled = (attention @ keys).mean(0)  # the similarity-weighted sums, averaged over the real items
    expected = torch.sigmoid(adapter.gate.weight.detach() @ pooled + adapter.gate.bias.detach())
    first, second = adapter(window, torch.tensor([2]))
    torch.testing.assert_close(torch.cat([first, second], dim=-1)[0], expected)


@pytest.mark.parametrize("kind", ["full", "low-rank"])
def test_gate_scales_each_output_units_update(kind):
    torch.manual_seed(0)
    devices, out_dim, in_dim = 3, 4, 5
    delta, bias_delta = random_delta(kind, devices, out_dim, in_dim), torch.randn(devices, out_dim)
    weight, bias, gate = torch.randn(out_dim, in_dim), torch.randn(out_dim), torch.rand(devices, out_dim)
    x = torch.randn(devices, 2, in_dim)  # two candidate rows per device
    delta_weight = delta.materialize()
    expected_weight = weight + gate.unsqueeze(-1) * delta_weight
    expected_bias = bias + gate * bias_delta
    layer = GeneratedLayer(delta, bias_delta, gate)
    personal_weight, personal_bias = layer.personalise(weight, bias)
    torch.testing.assert_close(personal_weight, expected_weight)
    torch.testing.assert_close(personal_bias, expected_bias)
    expected = torch.einsum("boi,bni->bno", expected_weight, x) + expected_bias.unsqueeze(1)
    torch.testing.assert_close(layer.linear(x, weight, bias), expected, atol=1e-5, rtol=1e-5)


def test_closed_gates_give_the_global_layers_and_open_ones_the_ungated_update(tiny_config_dict):
    _, loaders, model = build_pipeline(tiny_config_dict)
    model.eval()
    batch = first_batch(loaders)
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        representation = model.backbone(item_seq, item_seq_len)
        global_vector = model.classifier(representation)
        adapter = model.stabilizer
        model.stabilizer = None
        ungated = model.forward(item_seq, item_seq_len)
        model.stabilizer = adapter
        adapter.gate.weight.zero_()
        for bias, expected in ((-1e4, global_vector), (1e4, ungated)):
            adapter.gate.bias.fill_(bias)  # sigmoid saturates: every gate exactly 0, then exactly 1
            torch.testing.assert_close(model.forward(item_seq, item_seq_len), expected, atol=1e-6, rtol=0)
        adapter.gate.bias.fill_(-1e4)
        for (weight, bias), global_weight, global_bias in zip(
            model.personalised_parameters(item_seq, item_seq_len), model.classifier.weight, model.classifier.bias
        ):
            torch.testing.assert_close(weight, global_weight.expand_as(weight), atol=0, rtol=0)
            torch.testing.assert_close(bias, global_bias.expand_as(bias), atol=0, rtol=0)
    assert not torch.allclose(ungated, global_vector, atol=1e-4)


# --- Generator -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out_dim, in_dim, rank, expected", [(1, 8, 4, 1), (8, 2, 4, 2), (8, 8, 4, 4), (6, 3, 0, 0)]
)
def test_generator_rank_is_capped_at_the_layers_smaller_side(out_dim, in_dim, rank, expected):
    branch = LayerBranch(4, out_dim, in_dim, rank)
    delta, bias_delta = branch(torch.randn(2, 4))
    assert delta.materialize().shape == (2, out_dim, in_dim) and bias_delta.shape == (2, out_dim)
    if expected == 0:
        assert isinstance(delta, FullDelta)
    else:
        assert branch.weight_decoder.rank == expected and delta.core.shape == (2, expected, expected)


def test_dins_one_wide_logit_layer_gets_a_rank_one_update(din_config_dict):
    _, _, model = build_pipeline({**din_config_dict, "generator_rank": 4})
    ranks = [branch.weight_decoder.rank for branch in model.generator.branches]
    assert model.head.layer_shapes[-1] == (1, 8) and ranks == [4, 4, 1]


def test_pooled_state_code_ignores_the_padding_after_the_window():
    torch.manual_seed(0)
    encoder = PooledStateEncoder(6, 4)
    window, window_len = torch.randn(3, 3, 6), torch.tensor([3, 2, 1])
    codes = [encoder(pad_with_noise(window, window_len, slots), window_len) for slots in (3, 10, 20)]
    for code in codes[1:]:
        torch.testing.assert_close(code, codes[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(codes[0][2], torch.tanh(encoder.project(window[2, 0])))  # one real item: itself


def test_pooled_state_code_is_the_mean_of_the_real_states():
    encoder = PooledStateEncoder(2, 2)
    with torch.no_grad():
        encoder.project.weight.copy_(torch.eye(2))
        encoder.project.bias.zero_()
    window = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # two real states, then padding
    torch.testing.assert_close(encoder(window, torch.tensor([2])), torch.tanh(torch.tensor([[2.0, 3.0]])))


def identity_attention_encoder(recency, query):
    """An attention encoder over 2-wide items whose key map is the identity."""
    encoder = WindowAttentionEncoder(2, 2, len(recency))
    with torch.no_grad():
        encoder.key.weight.copy_(torch.eye(2))
        encoder.key.bias.zero_()
        encoder.recency.weight.copy_(torch.tensor(recency))
        encoder.query.copy_(torch.tensor(query))
    return encoder


@pytest.mark.parametrize("query", [[0.0, 0.0], [2.0, -1.0]], ids=["mean", "weighted"])
def test_attention_code_tags_each_item_with_its_age_and_weighs_the_keys_by_the_query(query):
    encoder = identity_attention_encoder([[0.1, 0.0], [0.0, 0.2], [0.3, 0.3]], query)  # recency of ages 0, 1, 2
    window = torch.tensor([[[1.0, -1.0], [0.5, 0.5], [9.0, 9.0]]])  # two real items, then padding
    # the older item is 1 step from the newest, the newest 0 steps
    keys = torch.tanh(torch.tensor([[1.0 + 0.0, -1.0 + 0.2], [0.5 + 0.1, 0.5 + 0.0]]))
    weights = torch.softmax(keys @ torch.tensor(query), dim=0)
    torch.testing.assert_close(encoder(window, torch.tensor([2])), (weights @ keys).unsqueeze(0))


def test_attention_encoder_starts_as_a_plain_mean_with_small_recency_tags():
    torch.manual_seed(0)
    encoder = WindowAttentionEncoder(64, 8, 20)
    assert torch.equal(encoder.query.detach(), torch.zeros(8))
    recency = encoder.recency.weight.detach()
    assert abs(recency.mean()) < 0.005 and 0.015 < recency.std() < 0.025  # N(0, INIT_STD)


# --- Real-time window longer than the stored history -------------------------------------------------------


def test_window_longer_than_a_full_history_holds_that_whole_history():
    item_seq = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    window, window_len = realtime_window(item_seq, torch.tensor([4, 3]), 6)
    assert window.tolist() == [[1, 2, 3, 4, 0, 0], [5, 6, 7, 0, 0, 0]] and window_len.tolist() == [4, 3]
    prefix_len, targets, is_pair = window_training_pairs(item_seq, torch.tensor([4, 3]), 6)
    assert (targets * is_pair).tolist() == [[0, 2, 3, 4, 0, 0], [0, 6, 7, 0, 0, 0]]
    assert (prefix_len * is_pair).tolist() == [[0, 1, 2, 3, 0, 0], [0, 1, 2, 0, 0, 0]]


@pytest.mark.parametrize("generator_input", ["window", "backbone"])
def test_a_window_longer_than_max_item_list_length_generates_from_the_whole_history(tiny_config_dict, generator_input):
    config_dict = {**tiny_config_dict, "MAX_ITEM_LIST_LENGTH": 4, "realtime_window": 10, "generator_input": generator_input}
    _, loaders, model = build_pipeline(config_dict)
    model.eval()
    batch = first_batch(loaders)
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    assert item_seq.size(1) == 4 and (item_seq_len == 4).sum() >= 5  # full histories among them
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        model.realtime_window_size = 4  # the same window without the extra padding
        torch.testing.assert_close(scores, model.full_sort_predict(batch), atol=1e-5, rtol=1e-5)
