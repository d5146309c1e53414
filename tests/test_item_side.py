"""``dynamic_side: item``: each device's generated layers transform the embeddings of the items it scores."""

import pytest
import torch
from conftest import build_pipeline, layers_checkpoint

from recbole_duet.errors import ConfigError
from recbole_duet.model import DUET, ItemSideDUET, model_name

pytestmark = pytest.mark.kernel_sensitive

SAMPLED = {
    "loss_type": "BPR",
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"},
}


@pytest.fixture
def item_side_dict(tiny_config_dict):
    return {**tiny_config_dict, **SAMPLED, "dynamic_side": "item"}


def with_update(model, scale=0.3):
    """Give the generator's zero-initialised output layers weights, so every device gets an update of its own."""
    torch.manual_seed(3)
    with torch.no_grad():
        for branch in model.generator.branches:
            for decoder in (branch.bias_decoder, branch.weight_decoder.output_layer()):
                decoder.weight.normal_(0, scale)
    return model.eval()


def test_the_item_side_is_its_own_duet_class(item_side_dict, tiny_config_dict):
    _, _, model = build_pipeline(item_side_dict)
    assert type(model) is ItemSideDUET and model_name(type(model)) == "DUET"
    assert type(build_pipeline({**tiny_config_dict, **SAMPLED})[2]) is DUET
    assert all(not parameter.requires_grad for parameter in model.item_layers.parameters())
    assert all(torch.count_nonzero(parameter) == 0 for parameter in model.item_layers.parameters())


def test_with_no_update_items_score_as_in_the_cloud_model(item_side_dict):
    """The item-side layers have no global part: a generator at zero scores exactly as the Layers model."""
    _, (_, valid_data, _), model = build_pipeline(item_side_dict)
    model.generator.start_at_zero()
    model.eval()
    batch = next(iter(valid_data))[0]
    with torch.no_grad():
        generated = model.predict(batch)
        model.inference = "global"
        cloud = model.predict(batch)
    torch.testing.assert_close(generated, cloud, atol=1e-6, rtol=0)


def test_a_score_is_the_user_vector_against_the_item_through_its_devices_layers(item_side_dict):
    """By hand: ``e1 = e + tanh(W1 e + b1)``, ``e2 = e1 + W2 e1 + b2`` with the device's weights, score ``u . e2``."""
    _, (_, valid_data, _), model = build_pipeline(item_side_dict)
    with_update(model)
    batch = next(iter(valid_data))[0]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        scores = model.predict(batch)
        user = model.classifier(model.represent(item_seq, item_seq_len)[0])
        (w1, b1), (w2, b2) = model.personalised_parameters(item_seq, item_seq_len)
        e = model.backbone.item_embedding(batch[model.ITEM_ID])
        e1 = e + torch.tanh(torch.einsum("boi,bi->bo", w1, e) + b1)
        e2 = e1 + torch.einsum("boi,bi->bo", w2, e1) + b2
        by_hand = (user * e2).sum(-1)
        user_side = DUET.predict(model, batch)  # the same weights applied to the user vector instead
    torch.testing.assert_close(scores, by_hand, atol=1e-5, rtol=1e-5)
    assert (scores - user_side).abs().max() > 1e-3


def test_two_items_one_user_vector_cannot_tell_apart_score_apart(item_side_dict):
    """No user vector separates items ``e`` and ``e + v`` with ``v`` orthogonal to it; a device's layers can."""
    _, (_, valid_data, _), model = build_pipeline(item_side_dict)
    with_update(model)
    batch = next(iter(valid_data))[0][:1]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        user = model.classifier(model.represent(item_seq, item_seq_len)[0])
        generated = model.generate(item_seq, item_seq_len)
        e = model.backbone.item_embedding(batch[model.ITEM_ID])
        v = torch.randn_like(e)
        v -= (v * user).sum(-1, keepdim=True) / (user * user).sum(-1, keepdim=True) * user
        pair = [(user * model.item_layers(item, generated)).sum(-1) for item in (e, e + v)]
    torch.testing.assert_close((user * e).sum(-1), (user * (e + v)).sum(-1), atol=1e-5, rtol=1e-5)
    assert (pair[0] - pair[1]).abs().item() > 1e-4


def test_on_a_fixed_cloud_model_only_the_generator_learns(item_side_dict):
    cloud = layers_checkpoint(item_side_dict)
    _, (train_data, _, _), model = build_pipeline({**item_side_dict, "cloud_checkpoint": cloud})
    with_update(model).train()
    loss_ppg, loss_umn = model.calculate_loss(next(iter(train_data)))
    (loss_ppg + loss_umn).backward()
    assert loss_umn.item() == 0
    learned = {name.split(".")[0] for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert learned == {"generator", "stabilizer"}
    assert any(parameter.grad.abs().sum() > 0 for parameter in model.generator.parameters())


def test_trained_jointly_the_backbone_learns_from_both_losses(item_side_dict):
    _, (train_data, _, _), model = build_pipeline({**item_side_dict, "training_order": "joint", "ppg_scope": "all"})
    with_update(model).train()
    loss_ppg, _ = model.calculate_loss(next(iter(train_data)))
    loss_ppg.backward()
    assert model.backbone.item_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"loss_type": "CE", "train_neg_sample_args": None}, "loss_type CE"),
        ({"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"}}, "full ranking"),
        ({"dynamic_side": "items"}, r"one of \['user', 'item'\]"),
    ],
)
def test_a_side_that_cannot_score_is_refused_naming_the_key(item_side_dict, settings, expected):
    with pytest.raises(ConfigError, match=f"'dynamic_side'.*{expected}"):
        build_pipeline({**item_side_dict, **settings})


def test_din_keeps_its_generated_mlp(din_config_dict):
    with pytest.raises(ConfigError, match="'dynamic_side'.*'user' with backbone DIN"):
        build_pipeline({**din_config_dict, "dynamic_side": "item"})


def test_an_item_side_model_does_not_export(tmp_path):
    from bundles import perturbed_checkpoint

    from recbole_duet.deploy.export import export_bundle

    checkpoint, _, _ = perturbed_checkpoint(str(tmp_path), "SASRec", dynamic_side="item", **SAMPLED)
    with pytest.raises(ConfigError, match="'dynamic_side'.*'user' to export"):
        export_bundle(checkpoint, str(tmp_path / "b"))


def test_a_device_is_personalised_once_for_all_its_candidate_rows(item_side_dict):
    """Scoring a validation batch (11 rows a case) gives each row the score it gets scored alone."""
    _, (_, valid_data, _), model = build_pipeline(item_side_dict)
    with_update(model)
    batch = next(iter(valid_data))[0]
    with torch.no_grad():
        together = model.predict(batch)
        alone = torch.cat([model.predict(batch[row : row + 1]) for row in range(0, len(batch), 7)])
    torch.testing.assert_close(together[::7], alone, atol=1e-5, rtol=1e-5)
