"""``fixed_valid_negatives``: every validation of a run ranks its targets against the same sampled negatives, drawn
from a stream of their own, and leaves numpy's generator where the training left it."""

import numpy as np
import pytest
import torch
from conftest import build_pipeline

from recbole_duet.errors import ConfigError
from recbole_duet.training.sampled_validation import numpy_seeded, validation_seed
from recbole_duet.training.trainer import get_trainer

SAMPLED = {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"}}


def trainer_seeing_items(config_dict, fixed):
    """A SASRec trainer under sampled evaluation, and the item ids of every row its model is asked to score."""
    config, (_, valid_data, _), model = build_pipeline(
        {**config_dict, **SAMPLED, "fixed_valid_negatives": fixed}, model="SASRec"
    )
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    seen = []
    predict = model.predict

    def recording_predict(interaction):
        seen.append(interaction[model.ITEM_ID].clone())
        return predict(interaction)

    model.predict = recording_predict
    return trainer, valid_data, seen


def validate(trainer, valid_data, seen):
    seen.clear()
    trainer._valid_epoch(valid_data)
    return torch.cat(seen)


def loader_items(valid_data, item_field):
    return torch.cat([interaction[item_field] for interaction, *_ in valid_data])


def test_every_validation_meets_the_same_negatives_from_a_stream_of_its_own(tiny_config_dict):
    trainer, valid_data, seen = trainer_seeing_items(tiny_config_dict, fixed=True)
    np.random.seed(0)
    first = validate(trainer, valid_data, seen)
    np.random.seed(1)
    assert torch.equal(validate(trainer, valid_data, seen), first)
    with numpy_seeded(validation_seed(tiny_config_dict["seed"])):
        assert torch.equal(loader_items(valid_data, trainer.model.ITEM_ID), first)
    with numpy_seeded(tiny_config_dict["seed"]):  # what the benchmark harness tests under
        assert not torch.equal(loader_items(valid_data, trainer.model.ITEM_ID), first)


def test_validation_leaves_numpy_where_training_left_it(tiny_config_dict):
    trainer, valid_data, seen = trainer_seeing_items(tiny_config_dict, fixed=True)
    np.random.seed(3)
    expected_next = np.random.RandomState(3).randint(1 << 30, size=4)
    validate(trainer, valid_data, seen)
    assert np.array_equal(np.random.randint(1 << 30, size=4), expected_next)


def test_by_default_each_validation_draws_anew(tiny_config_dict):
    trainer, valid_data, seen = trainer_seeing_items(tiny_config_dict, fixed=False)
    np.random.seed(0)
    first = validate(trainer, valid_data, seen)
    second = validate(trainer, valid_data, seen)
    assert first.shape == second.shape
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"fixed_valid_negatives": "yes"}, "fixed_valid_negatives"),
        ({"fixed_valid_negatives": True, "worker": 2}, "worker"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(tiny_config_dict, settings, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        build_pipeline({**tiny_config_dict, **settings}, model="SASRec")
