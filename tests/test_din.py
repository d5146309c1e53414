"""DUET with RecBole's DIN as backbone: generated prediction MLP, normalisation, fast full ranking."""

import os

import pytest
import torch
from conftest import assert_device_parameters_equal, build_pipeline

from recbole_duet import run_recbole_duet
from recbole_duet.config import Config
from recbole_duet.data import ensure_dataset_files
from recbole_duet.errors import DatasetNotFoundError
from recbole_duet.model import DUETDIN
from recbole_duet.model.din_head import item_feature_embedding
from recbole_duet.quick_start import run_experiment

pytestmark = pytest.mark.kernel_sensitive

FULL_SORT = {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"}


@pytest.fixture(params=[0, 4], ids=["full", "rank4"])
def din_duet(request, din_config_dict):
    config, loaders, model = build_pipeline({**din_config_dict, "generator_rank": request.param})
    return model, next(iter(loaders[0]))


def device_inputs(model, batch):
    return batch[model.USER_ID], batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]


def test_the_generated_layers_are_dins_prediction_mlp(din_duet):
    model, _ = din_duet
    assert isinstance(model, DUETDIN)
    assert model.head.layer_shapes == [(16, 3 * 2 * 4), (8, 16), (1, 8)]  # 2 item features x embedding 4
    assert model.head.linears[-1] is model.backbone.dnn_predict_layers


def test_the_din_cloud_model_alone_scores_as_duet_din_with_its_global_mlp(din_config_dict):
    """CloudDIN built on its own with DUET(DIN)'s DIN and global MLP scores as DUET(DIN) under
    ``duet_inference: global``, pointwise and over the whole catalogue."""
    from recbole_duet.model.cloud_din import CloudDIN

    config, loaders, duet = build_pipeline({**din_config_dict, "duet_inference": "global"})
    cloud = CloudDIN(config, loaders[0]._dataset)
    for name, module in cloud.cloud_modules().items():
        module.load_state_dict(getattr(duet, name).state_dict())
    duet.eval(), cloud.eval()
    batch = next(iter(loaders[0]))
    with torch.no_grad():
        torch.testing.assert_close(cloud.predict(batch), duet.predict(batch), atol=0, rtol=0)
        torch.testing.assert_close(cloud.full_sort_predict(batch), duet.full_sort_predict(batch), atol=0, rtol=0)


def test_a_trained_din_is_the_cloud_model_duet_din_trains_without_its_generator(din_config_dict):
    """DUET(DIN) scored with its global MLP (``duet_inference: global``, the harness's Layers-DIN) trains DIN's own
    weights as DIN trains them: an epoch of each from one seed ends at the same DIN. So the harness trains it once,
    and the checkpoint of a plain DIN is the cloud model the fine-tuning baseline tunes, loaded exactly."""
    plain = {key: value for key, value in din_config_dict.items() if key != "backbone"}
    din = run_experiment(Config(model="DIN", dataset="tiny", config_dict=plain))["trainer"]
    layers = run_experiment(Config(model="DUET", dataset="tiny", config_dict={**din_config_dict, "duet_inference": "global"}))
    untrained = build_pipeline(din_config_dict)[2].backbone.state_dict()
    din_state, layers_state = din.model.state_dict(), layers["trainer"].model.backbone.state_dict()
    assert set(din_state) == set(layers_state)
    for name, value in din_state.items():
        torch.testing.assert_close(layers_state[name], value, msg=name)
    assert not torch.equal(din_state["dnn_predict_layers.weight"], untrained["dnn_predict_layers.weight"])  # it trained
    _, _, finetune = build_pipeline({**din_config_dict, "cloud_checkpoint": din.saved_model_file}, model="Finetune")
    for name, value in finetune.backbone.state_dict().items():
        assert torch.equal(value, din_state[name]), name


def test_every_generator_and_adapter_weight_receives_gradient(din_duet):
    model, batch = din_duet
    model.train()
    sum(model.calculate_loss(batch)).backward()
    state_keys = set(model.state_dict())
    for prefix, module in [("generator.", model.generator), ("stabilizer.", model.stabilizer)]:
        for name, param in module.named_parameters():
            assert prefix + name in state_keys
            assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {prefix}{name}"


@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
def test_generated_mlp_does_not_depend_on_the_rest_of_the_batch(din_config_dict, training):
    """Batch norm in the generated path uses running statistics, so even in training a device's output is
    its own; dropout is disabled here so that train mode is deterministic."""
    _, loaders, model = build_pipeline({**din_config_dict, "dropout_prob": 0.0})
    batch = next(iter(loaders[0]))
    model.train(training)
    user, item_seq, item_seq_len = device_inputs(model, batch)
    mlp_input = torch.randn(len(user), model.head.layer_shapes[0][1])
    with torch.no_grad():
        together = model.personalised_parameters(user, item_seq, item_seq_len)
        logits_together = model.head(mlp_input, model.generate(user, item_seq, item_seq_len))
        for device in [0, 5, len(user) - 1]:
            rows = slice(device, device + 1)
            alone = model.personalised_parameters(user[rows], item_seq[rows], item_seq_len[rows])
            assert_device_parameters_equal(alone, together, device)
            logit_alone = model.head(mlp_input[rows], model.generate(user[rows], item_seq[rows], item_seq_len[rows]))
            torch.testing.assert_close(logit_alone[0], logits_together[device], atol=1e-6, rtol=0)


def test_full_sort_predict_equals_predict_on_every_pair(din_duet):
    model, batch = din_duet
    model.eval()
    rows = batch[:6]
    n_items = model.n_items
    pairs = rows.repeat_interleave(n_items)
    pairs.update(type(rows)({model.ITEM_ID: torch.arange(n_items).repeat(len(rows))}))
    with torch.no_grad():
        model.eval_batch_size = 50  # force several item chunks
        full = model.full_sort_predict(rows)
        pointwise = model.predict(pairs).view(len(rows), n_items)
    assert full.shape == (6, n_items)
    torch.testing.assert_close(full, pointwise, atol=1e-5, rtol=1e-5)


def test_payload_reproduces_the_generated_scores(din_duet):
    model, batch = din_duet
    model.eval()
    user, item_seq, item_seq_len = device_inputs(model, batch)
    with torch.no_grad():
        generated_logit, _ = model._logits(user, item_seq, item_seq_len, batch[model.ITEM_ID])
        _, mlp_input = model.tap(user, item_seq, item_seq_len, batch[model.ITEM_ID])
        payload = model.personalised_parameters(user, item_seq, item_seq_len)
        torch.testing.assert_close(model.head.forward_with_parameters(mlp_input, payload), generated_logit)


@pytest.mark.parametrize(
    "evaluation, expected",
    [
        ({}, ["auc", "logloss"]),  # RecBole's DIN protocol: uni100 with value metrics
        (
            {"metrics": ["GAUC", "Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10"},
            ["gauc", "hit@10", "ndcg@10", "mrr@10"],
        ),
        (
            {"metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "eval_args": FULL_SORT},
            ["hit@10", "ndcg@10"],
        ),
    ],
    ids=["uni100-value", "uni100-ranking", "full-ranking"],
)
def test_duet_din_trains_and_tests_through_the_runner(din_config_dict, evaluation, expected):
    result = run_recbole_duet(model="DUET", dataset="tiny", config_dict={**din_config_dict, **evaluation})
    metrics = result["test_result"]
    assert list(metrics) == expected
    assert all(value >= 0 for value in metrics.values())


def test_plain_din_runs_through_the_plugin_runner(din_config_dict):
    config_dict = {key: value for key, value in din_config_dict.items() if key != "backbone"}
    result = run_recbole_duet(model="DIN", dataset="tiny", config_dict=config_dict)
    assert set(result["test_result"]) == {"auc", "logloss"}
    assert 0.0 <= result["test_result"]["auc"] <= 1.0


def test_missing_item_feature_column_is_named(din_config_dict, run_dir):
    from recbole_duet.config import Config

    config_dict = {**din_config_dict, "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "genre"]}}
    config = Config(model="DUET", dataset="tiny", config_dict=config_dict)
    with pytest.raises(DatasetNotFoundError, match=r"Field 'genre' of load_col\['item'\] is not a column of '.*tiny.item'"):
        ensure_dataset_files(config)


def test_missing_item_file_is_named(tiny_config_dict):
    config_dict = {**tiny_config_dict, "backbone": "DIN", "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "category"]}}
    with pytest.raises(DatasetNotFoundError, match=r"load_col\['item'\] asks for fields \['item_id', 'category'\] but '.*tiny.item' does not exist"):
        run_recbole_duet(model="DUET", dataset="tiny", config_dict=config_dict)


def test_the_window_is_embedded_with_every_item_feature_numerical_ones_too(din_config_dict):
    """DIN concatenates an item's token and numerical feature embeddings; the generator's window must too."""
    item_file = os.path.join(din_config_dict["data_path"], "tiny", "tiny.item")
    with open(item_file, "w", encoding="utf-8") as file:
        file.write("item_id:token\tcategory:token\tprice:float\n")
        file.write("".join(f"i{item}\tc{item % 5}\t{item / 40:.3f}\n" for item in range(1, 41)))
    load_col = {**din_config_dict["load_col"], "item": ["item_id", "category", "price"]}
    _, loaders, model = build_pipeline({**din_config_dict, "load_col": load_col, "numerical_features": ["price"]})
    model.eval()
    user, item_seq, item_seq_len = model.device_inputs(next(iter(loaders[0])))
    embedded = item_feature_embedding(model.backbone, user, item_seq)
    assert embedded.shape == (*item_seq.shape, 3 * 4)  # item id, category and price, 4 wide each
    assert model.backbone.att_list[0] // 4 == 3 * 4  # what DIN's attention compares: the same features
    with torch.no_grad():
        assert torch.isfinite(model.full_sort_predict(next(iter(loaders[0])))).all()
