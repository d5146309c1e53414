"""RecBole's Transformer activations run as fused kernels in every model the plugin builds, and compute what
RecBole's element-wise versions compute, forward and backward; when no gradient is kept its target attention
runs on each history length's real positions in row chunks, with the scores of its single pass."""

import pytest
import torch
from conftest import build_pipeline
from recbole.model.layers import FeedForward, SequenceAttLayer

from recbole_duet.training import speedups
from recbole_duet.training.speedups import (
    RECBOLE_ACTIVATIONS,
    RECBOLE_ATTENTION_FORWARD,
    attention_chunk_rows,
    use_recbole_activations,
)


def feed_forwards(model):
    return [module for module in model.modules() if isinstance(module, FeedForward)]


def activation_node(feed_forward):
    """The autograd node that the block's activation leaves on its output."""
    x = torch.randn(3, 5, feed_forward.dense_1.in_features, requires_grad=True)
    return feed_forward.intermediate_act_fn(feed_forward.dense_1(x)).grad_fn.name()


def loss_and_gradients(model, batch):
    model.zero_grad()
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("model_name, extra", [("SASRec", {}), ("DUET", {"backbone": "SASRec"})])
def test_models_built_by_the_plugin_use_the_fused_gelu(tiny_config_dict, model_name, extra):
    _, _, model = build_pipeline({**tiny_config_dict, **extra}, model=model_name)
    assert feed_forwards(model)
    assert {activation_node(block) for block in feed_forwards(model)} == {"GeluBackward0"}


def test_the_fused_gelu_gives_recbole_s_loss_and_gradients(tiny_config_dict):
    config_dict = {**tiny_config_dict, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}
    _, (train_data, _, _), model = build_pipeline(config_dict, model="SASRec")
    batch = next(iter(train_data))
    fused_loss, fused_gradients = loss_and_gradients(model, batch)
    use_recbole_activations(model)
    assert {activation_node(block) for block in feed_forwards(model)} != {"GeluBackward0"}
    recbole_loss, recbole_gradients = loss_and_gradients(model, batch)
    torch.testing.assert_close(fused_loss, recbole_loss, atol=1e-5, rtol=1e-5)
    assert fused_gradients.keys() == recbole_gradients.keys()
    for name, gradient in fused_gradients.items():
        torch.testing.assert_close(gradient, recbole_gradients[name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("activation, node", [("gelu", "GeluBackward0"), ("swish", "SiluBackward0")])
def test_each_fused_activation_matches_recbole_s_formula(activation, node):
    block = FeedForward(8, 16, 0.0, activation, 1e-12)
    assert activation_node(block) == node
    x = torch.randn(4, 16, requires_grad=True)
    fused = block.intermediate_act_fn(x)
    (fused_gradient,) = torch.autograd.grad(fused.sum(), x)
    reference = RECBOLE_ACTIVATIONS[activation](block, x)
    (reference_gradient,) = torch.autograd.grad(reference.sum(), x)
    torch.testing.assert_close(fused, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(fused_gradient, reference_gradient, atol=1e-6, rtol=0)


@pytest.fixture(autouse=True)
def plugin_attention(monkeypatch):
    """The plugin's target attention, as its Config installs it, whether or not an earlier test built one."""
    monkeypatch.setattr(SequenceAttLayer, "forward", SequenceAttLayer.forward)  # restored after the test
    speedups.install_attention_by_history_length()


@pytest.fixture
def attention_calls(monkeypatch):
    """Chunks of 24 MLP input values (a row of history 3, width 2) and, per RecBole forward call, its rows and the
    history positions it reads."""
    calls = []

    def counted(self, queries, keys, keys_length):
        calls.append((len(queries), keys.shape[1]))
        return RECBOLE_ATTENTION_FORWARD(self, queries, keys, keys_length)

    monkeypatch.setattr(speedups, "ATTENTION_CHUNK_ELEMENTS", 3 * 4 * 2)
    monkeypatch.setattr(speedups, "RECBOLE_ATTENTION_FORWARD", counted)
    return calls


def attention_inputs(rows=8, history=3, width=2):
    """Lengths 1, 2, 3, 0, 1, 2, 3, 0: every length, so a row read with another's mask or positions shows."""
    torch.manual_seed(0)
    keys_length = (torch.arange(rows) + 1) % (history + 1)
    return torch.randn(rows, width), torch.randn(rows, history, width), keys_length


@pytest.mark.parametrize("softmax_stag", [False, True])
@pytest.mark.parametrize("return_seq_weight", [True, False])
def test_target_attention_by_length_matches_one_pass_without_gradients(
    attention_calls, return_seq_weight, softmax_stag
):
    layer = SequenceAttLayer(
        torch.arange(3), att_hidden_size=(8, 4, 2), softmax_stag=softmax_stag, return_seq_weight=return_seq_weight
    )
    queries, keys, keys_length = attention_inputs()
    real = keys_length > 0  # a history with no item has no weights (NaN after a softmax over nothing), as in RecBole
    with torch.no_grad():
        one_pass = RECBOLE_ATTENTION_FORWARD(layer, queries, keys, keys_length)
        attention_calls.clear()
        grouped = layer(queries, keys, keys_length)
    # length 0 and 1 read one position (3 rows a chunk), length 2 two (1 row), length 3 all three (1 row)
    assert sorted(attention_calls) == [(1, 2), (1, 2), (1, 3), (1, 3), (2, 1), (2, 1)]
    assert grouped.shape == one_pass.shape == (8, 1, 3 if return_seq_weight else 2)
    torch.testing.assert_close(grouped[real], one_pass[real], atol=1e-6, rtol=0)
    assert torch.equal(layer.mask_mat, torch.arange(3))


def test_target_attention_keeps_one_pass_while_training(attention_calls):
    layer = SequenceAttLayer(torch.arange(3), att_hidden_size=(8, 4, 2), return_seq_weight=False)
    queries, keys, keys_length = attention_inputs()
    layer(queries, keys, keys_length).sum().backward()
    assert attention_calls == [(8, 3)]
    assert all(parameter.grad is not None for parameter in layer.parameters())


def test_target_attention_keeps_one_pass_while_traced_for_export(attention_calls):
    """A traced graph replays whatever ran while tracing: grouped by this batch's lengths it would fit no other."""
    layer = SequenceAttLayer(torch.arange(3), att_hidden_size=(8, 4, 2), return_seq_weight=False)
    queries, keys, keys_length = attention_inputs()
    with torch.no_grad():
        traced = torch.jit.trace(layer, (queries, keys, keys_length), check_trace=False)
        assert [(rows, int(width)) for rows, width in attention_calls] == [(8, 3)]
        other_lengths = torch.full_like(keys_length, 3)
        torch.testing.assert_close(
            traced(queries, keys, other_lengths), RECBOLE_ATTENTION_FORWARD(layer, queries, keys, other_lengths)
        )


def test_attention_chunk_rows():
    assert attention_chunk_rows(50, 20) == (1 << 20) // 4000 == 262  # Beauty's DIN: two 10-wide features
    assert attention_chunk_rows(1 << 20, 1) == 1


def test_din_scores_by_length_as_in_one_pass(din_config_dict, attention_calls, monkeypatch):
    """A DIN the plugin builds scores a batch (eval) exactly as RecBole's single pass does, each row reading only
    its history's real positions."""
    plain = {key: value for key, value in din_config_dict.items() if key != "backbone"}
    _, (train_data, _, _), din = build_pipeline(plain, model="DIN")
    din.eval()
    batch = next(iter(train_data))
    lengths = batch[din.ITEM_SEQ_LEN]
    assert len(lengths.unique()) > 1 and lengths.min() < batch[din.ITEM_SEQ].shape[1]
    with torch.no_grad():
        grouped = din.predict(batch)
        assert {width for _, width in attention_calls} == set(lengths.unique().tolist())
        assert sum(rows for rows, _ in attention_calls) == len(batch)
        monkeypatch.setattr(SequenceAttLayer, "forward", speedups.RECBOLE_ATTENTION_FORWARD)  # the counted one
        attention_calls.clear()
        one_pass = din.predict(batch)
    assert attention_calls == [(len(batch), batch[din.ITEM_SEQ].shape[1])]
    torch.testing.assert_close(grouped, one_pass, atol=1e-6, rtol=0)
