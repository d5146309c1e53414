"""DUET on every RecBole next-item backbone it accepts: one epoch of training learns, generation and scores
stay per device, the weights_only checkpoint reproduces the scores; refused backbones fail at Config time."""

import os
import random
import types

import pytest
import torch
from conftest import assert_device_parameters_equal, build_pipeline, write_atomic_dataset
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import init_seed

from recbole_duet.config import Config
from recbole_duet.errors import ConfigError
from recbole_duet.model import PLUGIN_MODELS, backbones, plugin_class
from recbole_duet.model.backbones import (
    BACKBONE_CLASSES,
    REFUSED,
    CosineScoring,
    REFUSED_BACKBONES,
    SequenceStatesTap,
    check_backbone,
    is_pairwise,
    reads_states,
    refusal,
)
from recbole_duet.training.checkpoint import load_checkpoint
from recbole_duet.training.trainer import get_trainer

# DIN (one logit per user-item pair) has its own DUET class and tests (test_din.py).
NEXT_ITEM_BACKBONES = [name for name in BACKBONE_CLASSES if name != "DIN"]
# What a backbone needs beyond the tiny settings: item features, pre-trained entity vectors, fewer blocks.
FEATURES = {"selected_features": ["category"]}
BACKBONE_SETTINGS = {
    "FDSA": FEATURES,
    "GRU4RecF": FEATURES,
    "SASRecF": FEATURES,
    "GRU4RecKG": {"additional_feat_suffix": ["ent"], "alias_of_item_id": ["ent_id"], "preload_weight": {"ent_id": "ent_vec"}},
    "NextItNet": {"block_num": 1},
    "FEARec": {"n_layers": 2},  # its frequency filters divide by n_layers - 1
}


def write_entity_vectors(root, name="tiny", n_items=40, dim=16, seed=0):
    """``<name>.ent``: a pre-trained vector per item (GRU4RecKG's knowledge-graph entity embeddings)."""
    rng = random.Random(seed)
    lines = ["ent_id:token\tent_vec:float_seq"]
    lines += [f"i{item}\t" + " ".join(f"{rng.gauss(0, 0.1):.4f}" for _ in range(dim)) for item in range(1, n_items + 1)]
    with open(os.path.join(root, name, f"{name}.ent"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


@pytest.fixture
def backbone_config_dict(tmp_path, tiny_config_dict):
    """Tiny settings on a dataset with item features and entity vectors, trained at a rate one epoch shows."""
    data_path = write_atomic_dataset(str(tmp_path / "features"), item_file=True)
    write_entity_vectors(data_path)
    load_col = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "category"], "ent": ["ent_id", "ent_vec"]}
    return {**tiny_config_dict, "data_path": data_path, "load_col": load_col, "learning_rate": 0.01, "train_batch_size": 32}


def batch_loss(model, batch):
    """DUET's training loss on ``batch`` without dropout (L_ppg + umn_weight * L_umn)."""
    model.eval()
    with torch.no_grad():
        return sum(model.calculate_loss(batch)).item()


def assert_scores_and_parameters_are_per_device(model, batch):
    model.eval()
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    reordered = torch.flip(torch.arange(len(item_seq)), dims=[0])
    with torch.no_grad():
        parameters = model.personalised_parameters(item_seq, item_seq_len)
        in_other_batch = model.personalised_parameters(item_seq[reordered], item_seq_len[reordered])
        scores = model.full_sort_predict(batch)
        for device in [0, len(item_seq) - 1]:
            alone = model.personalised_parameters(item_seq[device : device + 1], item_seq_len[device : device + 1])
            assert_device_parameters_equal(alone, parameters, device, atol=1e-5)
            assert_device_parameters_equal(alone, in_other_batch, int((reordered == device).nonzero()), atol=1e-5)
            torch.testing.assert_close(model.full_sort_predict(batch[[device]])[0], scores[device], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("backbone", NEXT_ITEM_BACKBONES)
def test_one_epoch_learns_keeps_devices_apart_and_round_trips_the_checkpoint(backbone_config_dict, backbone):
    generator_input = "backbone" if reads_states(backbone) else "window"
    config_dict = {**backbone_config_dict, **BACKBONE_SETTINGS.get(backbone, {})}
    config, (train_data, valid_data, _), model = build_pipeline(
        {**config_dict, "backbone": backbone, "generator_input": generator_input}
    )
    assert type(model.backbone) is BACKBONE_CLASSES[backbone]
    batch = next(iter(train_data))
    before = batch_loss(model, batch)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    assert batch_loss(model, batch) < before

    assert_scores_and_parameters_are_per_device(model, batch)

    with torch.no_grad():
        scores = model.full_sort_predict(batch)
    init_seed(99, True)
    fresh = config.model_class(config, train_data._dataset)
    fresh.load_state_dict(load_checkpoint(trainer.saved_model_file)["state_dict"])
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.full_sort_predict(batch), scores, atol=0, rtol=0)


def refused_on_start(config_dict):
    with pytest.raises(ConfigError) as error:
        Config(model="DUET", dataset="no-such-data", config_dict=config_dict)
    return str(error.value)


@pytest.mark.parametrize("backbone", ["Caser", "NPE", "BERT4Rec", "RepeatNet", "KSR", "SASRecCPR"])
def test_refused_backbones_fail_before_reading_data_saying_why(run_dir, backbone):
    message = refused_on_start({"backbone": backbone})
    assert "'backbone'" in message and repr(backbone) in message and "\n" not in message
    assert f"{backbone} is refused: {REFUSED_BACKBONES[backbone]}" in message
    assert "'SASRec'" in message and "'NARM'" in message


@pytest.mark.parametrize("name", ["gru4rec", "GRU4REC", "Gru4Rec"])
def test_a_backbone_named_in_the_wrong_case_is_refused_naming_the_right_one(name):
    """In process (the command-line test of the same mistake runs in a subprocess mutation testing cannot see)."""
    with pytest.raises(ConfigError) as error:
        check_backbone(name)
    assert str(error.value) == (
        f"Invalid value '{name}' for config key 'backbone': expected 'GRU4Rec' (backbone names are case-sensitive)."
    )


@pytest.mark.parametrize("name", ["NoSuch", 3, None])
def test_an_unknown_backbone_is_refused_listing_the_supported_ones(name):
    with pytest.raises(ConfigError) as error:
        check_backbone(name)
    assert str(error.value) == f"Invalid value {name!r} for config key 'backbone': expected one of {list(BACKBONE_CLASSES)}."


@pytest.mark.parametrize(
    "name, reason",
    [
        ("SASRec", None),
        ("NextItNet", None),  # forward(item_seq): the lengths are not needed
        ("DIN", None),  # through its own DUET class
        ("RepeatNet", REFUSED["RepeatNet"]),
        ("Caser", "it needs the user id, its forward takes (user, item_seq), DUET only has the device's item sequence"),
        ("NPE", "it needs the user id, its forward takes (seq_item, user), DUET only has the device's item sequence"),
    ],
)
def test_refusal_reasons_come_from_the_forward_signature_or_the_declared_table(name, reason):
    assert refusal(name) == reason


def test_a_forward_wanting_more_than_the_sequence_is_refused_naming_its_arguments(monkeypatch):
    class WantsTimestamps(SequentialRecommender):
        def forward(self, item_seq, item_seq_len, timestamps):
            raise AssertionError("never called")

    monkeypatch.setattr(backbones, "_models", lambda: {"WantsTimestamps": WantsTimestamps})
    assert refusal("WantsTimestamps") == (
        "it needs more, its forward takes (item_seq, item_seq_len, timestamps), DUET only has the device's item sequence"
    )


def test_every_recbole_sequential_model_is_either_supported_or_refused():
    models = backbones._models()
    assert {"SASRec", "GRU4Rec", "DIN", "NARM", "STAMP", "SRGNN", "GCSAN", "CORE", "NextItNet", "Caser"} <= set(models)
    assert all(issubclass(cls, SequentialRecommender) and cls is not SequentialRecommender for cls in models.values())
    assert set(BACKBONE_CLASSES).isdisjoint(REFUSED_BACKBONES)
    assert set(BACKBONE_CLASSES) | set(REFUSED_BACKBONES) == set(models)


@pytest.mark.parametrize("backbone", sorted(set(BACKBONE_CLASSES) | {"DIN"}))
def test_pairwise_backbones_and_only_they_get_the_classes_whose_cloud_model_is_the_backbone(backbone):
    for name in PLUGIN_MODELS:
        assert plugin_class(name, backbone).cloud_is_backbone == is_pairwise(backbone)
    assert is_pairwise(backbone) == (backbone == "DIN")


def test_unknown_backbone_lists_the_supported_ones(run_dir):
    message = refused_on_start({"backbone": "Foo"})
    assert "'Foo'" in message and str(list(BACKBONE_CLASSES)) in message and "refused" not in message


@pytest.mark.parametrize("backbone", ["NextItNet", "CORE", "SINE", "DIN"])
def test_backbone_states_are_refused_where_forward_reads_none(run_dir, backbone):
    message = refused_on_start({"backbone": backbone, "generator_input": "backbone"})
    assert "'generator_input'" in message and f"'window' with backbone {backbone}" in message


def test_backbone_states_of_another_width_are_refused_when_the_model_is_built(tiny_config_dict):
    """NARM gathers its GRU states, ``hidden_size`` wide, then projects them to the item width."""
    with pytest.raises(ConfigError, match=r"value 'backbone' for config key 'generator_input'.*NARM.*\[1, 8, 24\].*\[B, L, 16\]"):
        build_pipeline({**tiny_config_dict, "backbone": "NARM", "hidden_size": 24, "generator_input": "backbone"})


class StatesModel(torch.nn.Module):
    """A stand-in next-item model whose forward may or may not read its user vector through gather_indexes."""

    max_seq_length = 3

    def __init__(self, width, through_gather_indexes):
        super().__init__()
        self.width, self.through_gather_indexes = width, through_gather_indexes

    def gather_indexes(self, output, gather_index):
        return output[torch.arange(len(output)), gather_index]

    def forward(self, item_seq, item_seq_len):
        states = torch.zeros(len(item_seq), item_seq.size(1), self.width)
        return self.gather_indexes(states, item_seq_len - 1) if self.through_gather_indexes else states[:, -1]


@pytest.mark.parametrize(
    "model, found", [(StatesModel(16, False), "not kept"), (StatesModel(5, True), "of shape [1, 3, 5]")], ids=["none", "width"]
)
def test_states_tap_refuses_states_it_cannot_use_saying_what_it_found(model, found):
    with pytest.raises(ConfigError) as error:
        SequenceStatesTap(model, 16)
    assert str(error.value) == (
        "Invalid value 'backbone' for config key 'generator_input': expected 'window' with backbone StatesModel: "
        f"its per-position states are {found}, not [B, L, 16] like its item embeddings."
    )


def test_states_tap_hands_over_each_forwards_states_once():
    model = StatesModel(16, True).train()
    tap = SequenceStatesTap(model, 16)
    assert model.training and tap.pop() is None  # the probe's states are not left behind
    model(torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 1]))
    assert tap.pop().shape == (2, 3, 16) and tap.pop() is None


def test_cosine_scoring_normalises_each_user_vector_whatever_its_leading_dimensions():
    """Fine-tuning scores ``[devices, pairs, D]`` user vectors: each vector is normalised on its own."""
    scoring = CosineScoring(types.SimpleNamespace(temperature=0.5))
    user_vectors = torch.randn(2, 3, 4)
    expected = user_vectors / user_vectors.norm(dim=-1, keepdim=True) / 0.5
    torch.testing.assert_close(scoring.user(user_vectors), expected)


def test_core_is_scored_by_cosine_over_its_temperature(tiny_config_dict):
    _, loaders, model = build_pipeline({**tiny_config_dict, "backbone": "CORE", "temperature": 0.5})
    model.eval()
    batch = next(iter(loaders[0]))
    with torch.no_grad():
        user_vector = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        items = torch.nn.functional.normalize(model.backbone.item_embedding.weight, dim=-1)
        expected = torch.nn.functional.normalize(user_vector, dim=-1) @ items.T / 0.5
        torch.testing.assert_close(model.full_sort_predict(batch), expected)
        rows = torch.arange(len(batch))
        torch.testing.assert_close(model.predict(batch), expected[rows, batch[model.ITEM_ID]])
