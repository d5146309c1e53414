"""Every config key of the plugin's models rejects a bad value naming the key, and accepts its edge values (issue 12).

The table of bad values is checked against :data:`recbole_duet.model.settings.DUET_KEYS` itself, so a key added
without a test fails here. Most checks call :func:`validate_duet_settings` directly (what the Config runs
before any data is read), for the first model the key belongs to; one bad value per key goes through the Config too.
"""

import os

import pytest
import yaml

from recbole_duet.config import Config, properties_dir
from recbole_duet.errors import ConfigError
from recbole_duet.model.settings import (
    DUET_KEYS,
    KEYS,
    _boolean,
    _existing_file_or_none,
    _inference_mode,
    _integer_at_least,
    _non_negative_number,
    _one_of,
    _positive_number,
    _probability_below_one,
    validate_duet_settings,
)

def read_defaults(model):
    with open(os.path.join(properties_dir(), "model", f"{model}.yaml"), encoding="utf-8") as file:
        return yaml.safe_load(file)


DEFAULTS = read_defaults("DUET")
# The fine-tuning baseline's defaults, with the cloud model it needs (any existing file passes the check).
FINETUNE_DEFAULTS = {**read_defaults("Finetune"), "cloud_checkpoint": __file__}
MODEL_OF = {key.name: key.models[0] for key in KEYS}  # the model each key is checked with here

# key -> (what the error says is expected, bad values: wrong range, wrong type, booleans posing as numbers, missing)
BAD_VALUES = {
    "duet_layers": ("an integer >= 1", [0, -2, 1.5, True, "2", None]),
    "realtime_window": ("an integer >= 1", [0, 2.0, False, None]),
    "generator_hidden_size": ("an integer >= 1", [0, 8.0, True, None]),
    "generator_rank": ("an integer >= 0", [-1, 4.0, True, "0", None]),
    "generator_input": ("one of ['window', 'backbone']", ["history", "Window", None]),
    "head_encoder": ("one of ['gru', 'attention']", ["lstm", "GRU", None]),
    "stabilizer": ("true or false", ["maybe", 1, 0, None]),
    "umn_weight": ("a number >= 0", [-0.5, -1, "1", True, None]),
    "ppg_scope": ("one of ['all', 'generator']", ["backbone", "All", None]),
    "update_dropout": ("a number in [0, 1)", [1, 1.0, -0.1, "0.1", True, None]),
    "generator_lr_scale": ("a number > 0", [0, 0.0, -1, "0.1", True, None]),
    "duet_inference": (
        "one of ['generated', 'global'] (on-device fine-tuning is a model of its own: model: Finetune)",
        ["finetune", "tuned", None],
    ),
    "duet_param_age": ("an integer >= 0", [-1, 1.0, "2", True, None]),
    "train_param_age": ("an integer >= 0", [-1, 1.5, "2", True, None]),
    "duet_activation": ("one of ['tanh', 'relu', 'gelu', 'none']", ["sigmoid", None]),
    "finetune_steps": ("an integer >= 1", [0, 2.5, True, None]),
    "finetune_lr": ("a number > 0", [0, 0.0, -0.1, "0.01", False, None]),
    "finetune_scope": ("one of ['dynamic', 'all']", ["everything", None]),
    "backbone_checkpoint": ("the path of an existing checkpoint file, or null", ["", "no/such/model.pth", 3, True]),
    "freeze_backbone": ("true or false", ["yes", 1, None]),
    "cloud_checkpoint": ("the path of an existing checkpoint file, or null", ["", "no/such/layers.pth", 0, False]),
    "training_order": ("one of ['cloud_first', 'joint']", ["cloud-first", "Joint", None]),
    "dynamic_side": ("one of ['user', 'item']", ["items", "User", None]),
}
EDGE_VALUES = {
    "duet_layers": [1, 5],
    "realtime_window": [1, 200],
    "generator_hidden_size": [1],
    "generator_rank": [0, 1],
    "generator_input": ["window", "backbone"],
    "head_encoder": ["gru", "attention"],
    "stabilizer": [True, False],
    "umn_weight": [0, 0.0, 1e-9, 3],
    "ppg_scope": ["all", "generator"],
    "update_dropout": [0, 0.0, 0.5, 0.999],
    "generator_lr_scale": [1e-6, 1, 10.0],
    "duet_inference": ["generated", "global"],
    "duet_param_age": [0, 1, 50],
    "train_param_age": [0, 3],
    "duet_activation": ["tanh", "relu", "gelu", "none"],
    "finetune_steps": [1],
    "finetune_lr": [1e-9, 1],
    "finetune_scope": ["dynamic", "all"],
    "backbone_checkpoint": [None, __file__],  # any existing file passes here; its content is checked when loaded
    "freeze_backbone": [False],  # True needs a backbone_checkpoint (tests/test_warm_start.py)
    "cloud_checkpoint": [None, __file__],  # its content and the keys it excludes: tests/test_warm_start.py
    "training_order": ["cloud_first", "joint"],  # what each trains: tests/test_cloud_first.py
    "dynamic_side": ["user", "item"],  # what the item side needs of the run's other settings: tests/test_item_side.py
}


def test_a_generator_only_ppg_needs_the_umn_loss_to_train_the_backbone():
    settings = {**DEFAULTS, "ppg_scope": "generator", "umn_weight": 0.0}
    error = rejection(settings)
    assert error.key == "ppg_scope"
    assert str(error) == (
        "Invalid value 'generator' for config key 'ppg_scope': expected 'all' with umn_weight 0 (nothing would train "
        "the backbone; SASRec's default is 'generator')."
    )
    validate_duet_settings({**settings, "umn_weight": 1e-9})


def test_every_duet_key_has_bad_and_edge_values_here():
    assert set(BAD_VALUES) == set(EDGE_VALUES) == set(DUET_KEYS) == (set(DEFAULTS) | set(FINETUNE_DEFAULTS)) - {"backbone"}


@pytest.mark.parametrize(
    "build, expected, accepted, rejected",
    [
        (lambda: _integer_at_least(1), "an integer >= 1", [1, 7], [0, -3, 1.0, True, "1", None]),
        (lambda: _integer_at_least(0), "an integer >= 0", [0, 2], [-1, False]),
        (_non_negative_number, "a number >= 0", [0, 0.0, 0.5, 3], [-0.1, -1, True, "1", None]),
        (_positive_number, "a number > 0", [1e-9, 2], [0, 0.0, -1, True, "1", None]),
        (_probability_below_one, "a number in [0, 1)", [0, 0.0, 0.3, 0.999], [1, 1.0, -0.01, True, "0.1", None]),
        (_boolean, "true or false", [True, False], [0, 1, "true", None]),
        (_existing_file_or_none, "the path of an existing checkpoint file, or null", [None, __file__], ["", "no.pth", 3, True]),
        (lambda: _one_of(("gru", "attention")), "one of ['gru', 'attention']", ["gru", "attention"], ["GRU", "lstm", None]),
        (
            _inference_mode,
            "one of ['generated', 'global'] (on-device fine-tuning is a model of its own: model: Finetune)",
            ["generated", "global"], ["finetune", "Global", None],
        ),
    ],
    ids=[
        "integer>=1", "integer>=0", "non-negative", "positive", "probability<1", "boolean", "file-or-none", "one-of",
        "inference-mode",
    ],
)
def test_each_check_factory_builds_the_check_it_describes(build, expected, accepted, rejected):
    """The factories run at import, where mutation testing cannot reach them; built here, they can be checked."""
    is_valid, description = build()
    assert description == expected
    assert [is_valid(value) for value in accepted] == [True] * len(accepted)
    assert [is_valid(value) for value in rejected] == [False] * len(rejected)


def rejection(settings, model="DUET"):
    with pytest.raises(ConfigError) as error:
        validate_duet_settings(settings, model)
    return error.value


def defaults_of(key):
    """The model ``key`` is checked with here, and that model's defaults."""
    model = MODEL_OF[key]
    return model, DEFAULTS if model == "DUET" else FINETUNE_DEFAULTS


@pytest.mark.parametrize(
    "key, value", [(key, value) for key, (_, values) in BAD_VALUES.items() for value in values]
)
def test_a_bad_value_is_rejected_naming_the_key_the_value_and_what_is_expected(key, value):
    model, defaults = defaults_of(key)
    error = rejection({**defaults, key: value}, model)
    assert error.key == key
    assert str(error) == f"Invalid value {value!r} for config key '{key}': expected {BAD_VALUES[key][0]}."


@pytest.mark.parametrize("key, value", [(key, value) for key, values in EDGE_VALUES.items() for value in values])
def test_edge_values_are_accepted(key, value):
    model, defaults = defaults_of(key)
    validate_duet_settings({**defaults, key: value}, model)


@pytest.mark.parametrize("key", ["backbone", "duet_layers", "realtime_window", "finetune_steps"])
def test_the_fine_tuning_baseline_checks_its_own_keys(key):
    bad = {"backbone": "Foo", "duet_layers": 0, "realtime_window": 0, "finetune_steps": 0}[key]
    assert rejection({**FINETUNE_DEFAULTS, key: bad}, "Finetune").key == key


def test_the_fine_tuning_baseline_ignores_duets_keys_and_needs_a_cloud_model():
    validate_duet_settings({**FINETUNE_DEFAULTS, "generator_rank": -1, "duet_inference": "finetune"}, "Finetune")
    error = rejection({**FINETUNE_DEFAULTS, "cloud_checkpoint": None}, "Finetune")
    assert str(error) == (
        "Invalid value None for config key 'cloud_checkpoint': expected the checkpoint of the cloud model each device "
        "tunes: a DUET trained with duet_inference: global."
    )


@pytest.mark.parametrize("backbone", ["Foo", None, "BERT4Rec", "Caser"])
def test_a_bad_backbone_is_rejected_naming_the_key(backbone):
    error = rejection({**DEFAULTS, "backbone": backbone})
    assert error.key == "backbone" and "'SASRec'" in str(error)
    if backbone in ("BERT4Rec", "Caser"):
        assert f"{backbone} is refused: " in str(error)  # with the reason


def backbone_defaults(backbone, model="DUET"):
    """<model>.yaml with the backbone's own <model>-<backbone>.yaml over it, as the Config layers them."""
    defaults = DEFAULTS if model == "DUET" else FINETUNE_DEFAULTS
    path = os.path.join(properties_dir(), "model", f"{model}-{backbone}.yaml")
    if not os.path.isfile(path):
        return {**defaults, "backbone": backbone}
    with open(path, encoding="utf-8") as file:
        return {**defaults, "backbone": backbone, **yaml.safe_load(file)}


NO_WHOLE_MODEL_TUNING = "'dynamic' with backbone DIN (whole-model tuning is next-item only)"


@pytest.mark.parametrize(
    "backbone, key, value, expected",
    [
        ("DIN", "finetune_scope", "all", NO_WHOLE_MODEL_TUNING),
        ("DIN", "finetune_scope", "dynamic", None),
        ("SASRec", "finetune_scope", "all", None),
        ("DIN", "generator_input", "backbone", "'window' with backbone DIN (it has no per-position states)"),
        ("SINE", "generator_input", "backbone", "'window' with backbone SINE (it has no per-position states)"),
        ("GRU4Rec", "generator_input", "backbone", None),
        ("SINE", "generator_input", "window", None),
        ("DIN", "ppg_scope", "generator", "'all' with backbone DIN (next-item backbones only)"),
        ("GRU4Rec", "ppg_scope", "generator", None),
        ("DIN", "training_order", "cloud_first", "'joint' with backbone DIN (next-item backbones only)"),
        ("DIN", "training_order", "joint", None),
        ("GRU4Rec", "training_order", "cloud_first", None),
        ("DIN", "dynamic_side", "item", "'user' with backbone DIN (its generated MLP reads the candidate already)"),
        ("GRU4Rec", "dynamic_side", "item", None),
    ],
)
def test_keys_that_depend_on_the_backbone(backbone, key, value, expected):
    """``expected``: what the error says is expected instead, or None where the combination is allowed."""
    model = MODEL_OF[key]
    settings = {**backbone_defaults(backbone, model), key: value}
    if expected is None:
        validate_duet_settings(settings, model)
    else:
        error = rejection(settings, model)
        assert error.key == key
        assert str(error) == f"Invalid value {value!r} for config key '{key}': expected {expected}."


@pytest.mark.parametrize(
    "overrides, key, value, expected",
    [
        ({"backbone_checkpoint": __file__}, "backbone_checkpoint", __file__,
         "null with cloud_checkpoint, which holds the backbone too"),
        ({"duet_inference": "global"}, "duet_inference", "global",
         "'generated' with cloud_checkpoint (its global layers are kept fixed: nothing would train)"),
        ({"backbone": "DIN"}, "cloud_checkpoint", __file__, "null with backbone DIN (next-item backbones only)"),
    ],
    ids=["backbone-checkpoint", "global-inference", "din"],
)
def test_a_fixed_cloud_model_refuses_what_would_leave_nothing_to_train(overrides, key, value, expected):
    """DUET on a trained cloud model (``cloud_checkpoint``) learns its generator alone; each combination that
    contradicts that is refused in one line naming the key, its value and what is expected."""
    error = rejection({**DEFAULTS, "cloud_checkpoint": __file__, **overrides})
    assert error.key == key
    assert str(error) == f"Invalid value {value!r} for config key '{key}': expected {expected}."
    validate_duet_settings({**DEFAULTS, "cloud_checkpoint": __file__})


@pytest.mark.parametrize("key", list(BAD_VALUES))
def test_the_config_stops_at_a_bad_value_before_reading_data(run_dir, key):
    value = BAD_VALUES[key][1][0]
    with pytest.raises(ConfigError, match=f"Invalid value {value!r} for config key '{key}'"):
        Config(model=MODEL_OF[key], dataset="no-such-data", config_dict={"cloud_checkpoint": __file__, key: value})
