"""The DUET configuration keys, their allowed values, and the check that runs when a Config is built.

Checking here (and not when the model is built) makes a typo fail in a second, before the dataset is read.
"""

import os

from recbole_duet.errors import ConfigError
from recbole_duet.model.backbones import check_backbone, reads_states

INFERENCE_MODES = ("generated", "global", "finetune")
ACTIVATIONS = ("tanh", "relu", "gelu", "none")
GENERATOR_INPUTS = ("window", "backbone")
HEAD_ENCODERS = ("gru", "attention")
FINETUNE_SCOPES = ("dynamic", "all")
PPG_SCOPES = ("all", "generator")
TRAINING_ORDERS = ("cloud_first", "joint")


def _one_of(choices):
    return lambda value: value in choices, f"one of {list(choices)}"


def _integer_at_least(minimum):
    def check(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    return check, f"an integer >= {minimum}"


def _non_negative_number():
    def check(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0

    return check, "a number >= 0"


def _positive_number():
    def check(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

    return check, "a number > 0"


def _probability_below_one():
    def check(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1

    return check, "a number in [0, 1)"


def _existing_file_or_none():
    def check(value):
        return value is None or (isinstance(value, str) and os.path.isfile(value))

    return check, "the path of an existing checkpoint file, or null"


def _boolean():
    return lambda value: isinstance(value, bool), "true or false"


DUET_KEYS = {
    "duet_layers": _integer_at_least(1),
    "realtime_window": _integer_at_least(1),
    "generator_hidden_size": _integer_at_least(1),
    "generator_rank": _integer_at_least(0),
    "generator_input": _one_of(GENERATOR_INPUTS),
    "head_encoder": _one_of(HEAD_ENCODERS),
    "stabilizer": _boolean(),
    "umn_weight": _non_negative_number(),
    "ppg_scope": _one_of(PPG_SCOPES),
    "update_dropout": _probability_below_one(),
    "generator_lr_scale": _positive_number(),
    "duet_inference": _one_of(INFERENCE_MODES),
    "duet_param_age": _integer_at_least(0),
    "duet_activation": _one_of(ACTIVATIONS),
    "finetune_steps": _integer_at_least(1),
    "finetune_lr": _positive_number(),
    "finetune_scope": _one_of(FINETUNE_SCOPES),
    "backbone_checkpoint": _existing_file_or_none(),
    "freeze_backbone": _boolean(),
    "cloud_checkpoint": _existing_file_or_none(),
    "training_order": _one_of(TRAINING_ORDERS),
}


def validate_duet_settings(settings):
    """Raise :class:`ConfigError` for the first DUET key whose value is missing or not allowed."""
    check_backbone(settings.get("backbone"))
    for key, (is_valid, expected) in DUET_KEYS.items():
        value = settings.get(key)
        if not is_valid(value):
            raise ConfigError(key, value, expected)
    if settings["freeze_backbone"] and settings["backbone_checkpoint"] is None:
        raise ConfigError("freeze_backbone", True, "false unless backbone_checkpoint names a trained backbone")
    if settings["cloud_checkpoint"] is not None:
        _check_fixed_cloud(settings)
    if settings["ppg_scope"] == "generator" and settings["umn_weight"] == 0:
        expected = "'all' with umn_weight 0 (nothing would train the backbone; SASRec's default is 'generator')"
        raise ConfigError("ppg_scope", "generator", expected)
    if settings["ppg_scope"] == "generator" and settings["backbone"] == "DIN":
        raise ConfigError("ppg_scope", "generator", "'all' with backbone DIN (next-item backbones only)")
    if settings["training_order"] == "cloud_first" and settings["backbone"] == "DIN":
        raise ConfigError("training_order", "cloud_first", "'joint' with backbone DIN (next-item backbones only)")
    if settings["finetune_scope"] == "all" and settings["backbone"] == "DIN":
        raise ConfigError("finetune_scope", "all", "'dynamic' with backbone DIN (whole-model tuning is next-item only)")
    if settings["generator_input"] == "backbone" and settings["head_encoder"] != "gru":
        raise ConfigError(
            "head_encoder",
            settings["head_encoder"],
            "'gru' (the default) with generator_input 'backbone', whose states are pooled, not encoded again",
        )
    if settings["generator_input"] == "backbone" and not reads_states(settings["backbone"]):
        raise ConfigError(
            "generator_input", "backbone", f"'window' with backbone {settings['backbone']} (it has no per-position states)"
        )


def _check_fixed_cloud(settings):
    """A cloud checkpoint holds the backbone too, leaves only the generator to train, and is next-item only."""
    path = settings["cloud_checkpoint"]
    if settings["backbone_checkpoint"] is not None:
        expected = "null with cloud_checkpoint, which holds the backbone too"
        raise ConfigError("backbone_checkpoint", settings["backbone_checkpoint"], expected)
    if settings["duet_inference"] == "global":
        expected = "'generated' with cloud_checkpoint (its global layers are kept fixed: nothing would train)"
        raise ConfigError("duet_inference", "global", expected)
    if settings["backbone"] == "DIN":
        raise ConfigError("cloud_checkpoint", path, "null with backbone DIN (next-item backbones only)")
