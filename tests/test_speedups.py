"""RecBole's Transformer activations run as fused kernels in every model the plugin builds, and compute what
RecBole's element-wise versions compute, forward and backward."""

import pytest
import torch
from conftest import build_pipeline
from recbole.model.layers import FeedForward

from recbole_duet.training.speedups import RECBOLE_ACTIVATIONS, use_recbole_activations


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
