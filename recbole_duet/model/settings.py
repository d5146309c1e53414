"""The configuration keys of the plugin's models (DUET and Finetune), their allowed values, and the check that runs
when a Config is built.

Every key is defined once, in :data:`KEYS` (name, the models it belongs to, type, default, allowed values, one-line
meaning): ``properties/model/<model>.yaml`` is written from it (:func:`render_yaml`) and the table of
docs/configuration.md too (:func:`render_markdown_table`); ``python -m recbole_duet.model.settings`` rewrites them,
and a test checks that none has drifted. Checking here (and not when the model is built) makes a typo fail in a second, before the
dataset is read.
"""

import os
import sys
from typing import NamedTuple

from recbole_duet.errors import ConfigError
from recbole_duet.model.backbones import check_backbone, is_pairwise, reads_states

# The plugin's models: DUET, and the on-device fine-tuning baseline on the same cloud model.
MODELS = ("DUET", "Finetune")
INFERENCE_MODES = ("generated", "global")
ACTIVATIONS = ("tanh", "relu", "gelu", "none")
GENERATOR_INPUTS = ("window", "backbone")
HEAD_ENCODERS = ("gru", "attention")
FINETUNE_SCOPES = ("dynamic", "all")
PPG_SCOPES = ("all", "generator")
TRAINING_ORDERS = ("cloud_first", "joint")
DYNAMIC_SIDES = ("user", "item")


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


def _inference_mode():
    """DUET's inference modes; the expected text says where the fine-tuning baseline, once a third mode, went."""
    is_valid, expected = _one_of(INFERENCE_MODES)
    return is_valid, expected + " (on-device fine-tuning is a model of its own: model: Finetune)"


class Key(NamedTuple):
    """One key, defined here only: its models' yaml files, the check below and the docs' table come from it."""

    name: str
    models: tuple  # of MODELS
    type: str
    default: object
    check: tuple  # (is_valid, what is expected), or None for ``backbone`` (check_backbone)
    meaning: str


BOTH, DUET_ONLY, FINETUNE_ONLY = MODELS, ("DUET",), ("Finetune",)


KEYS = [
    Key(
        "backbone", BOTH, "str", 'SASRec', None,
        "RecBole model providing the static layers: DIN or a next-item model with SASRec's contract (docs/backbones.md).",
    ),
    Key(
        "duet_layers", BOTH, "int", 2, _integer_at_least(1),
        'Next-item backbones: dynamic D x D layers between user vector and item table (DIN: its MLP).',
    ),
    Key(
        "duet_activation", BOTH, "str", 'tanh', _one_of(ACTIVATIONS),
        "Next-item backbones: activation inside the residual dynamic layers.",
    ),
    Key(
        "dynamic_side", DUET_ONLY, "str", 'user', _one_of(DYNAMIC_SIDES),
        "Next-item backbones: where the generated layers act: 'user' (on the user vector) or 'item' (on each scored item's embedding, no global part; BPR and sampled evaluation only; docs/model.md).",
    ),
    Key(
        "realtime_window", BOTH, "int", 10, _integer_at_least(1),
        "The device's real-time window: its last N interactions feed the generator (Finetune: the pairs a device tunes on).",
    ),
    Key(
        "generator_hidden_size", DUET_ONLY, "int", 64, _integer_at_least(1),
        "Size of the generator's device code and layer embeddings.",
    ),
    Key(
        "generator_input", DUET_ONLY, "str", 'window', _one_of(GENERATOR_INPUTS),
        "What the generator reads: 'window' (item embeddings, own encoder) or 'backbone' (the backbone's gather_indexes states at the window's positions, pooled).",
    ),
    Key(
        "head_encoder", DUET_ONLY, "str", 'gru', _one_of(HEAD_ENCODERS),
        "generator_input=window: 'gru' (a GRU over the window) or 'attention' (recency-tagged attention pooling, no recurrence).",
    ),
    Key(
        "generator_rank", DUET_ONLY, "int", 8, _integer_at_least(0),
        '0 = decode full D x D updates; r > 0 = factorised left @ core(r x r) @ right.',
    ),
    Key(
        "stabilizer", DUET_ONLY, "bool", True, _boolean(),
        'Use the Stable Weight Adapter (self-similarity gates on the generated update).',
    ),
    Key(
        "umn_weight", DUET_ONLY, "float", 1.0, _non_negative_number(),
        "Weight of the Universal Meta Network's loss: L = L_ppg + umn_weight * L_umn (1, the paper's: chosen on validation, docs/study-log.md; 0 skips its pass).",
    ),
    Key(
        "ppg_scope", DUET_ONLY, "str", 'all', _one_of(PPG_SCOPES),
        "What L_ppg trains: 'all' (every parameter) or 'generator' (the generator and adapter only: the backbone and global layers learn from L_umn alone). SASRec: 'generator' (DUET-SASRec.yaml).",
    ),
    Key(
        "update_dropout", DUET_ONLY, "float", 0.0, _probability_below_one(),
        "Training only: drop each output unit of a device's generated update with this probability (the rest scaled by 1/(1-p)).",
    ),
    Key(
        "backbone_checkpoint", DUET_ONLY, "str", None, _existing_file_or_none(),
        "A checkpoint of the backbone trained on its own (e.g. saved/SASRec-*.pth) to start DUET's static layers from.",
    ),
    Key(
        "freeze_backbone", DUET_ONLY, "bool", False, _boolean(),
        'With backbone_checkpoint: keep the loaded backbone fixed; only the dynamic layers, generator and adapter learn.',
    ),
    Key(
        "cloud_checkpoint", BOTH, "str", None, _existing_file_or_none(),
        'A DUET trained with duet_inference=global (the cloud model alone, the Layers model; with backbone DIN also a trained DIN, whose MLP is the global layers): its backbone and global layers are loaded and kept fixed. DUET: only the generator and adapter learn; Finetune (required): the model each device tunes.',
    ),
    Key(
        "training_order", DUET_ONLY, "str", 'cloud_first', _one_of(TRAINING_ORDERS),
        "'cloud_first': train the cloud model (backbone + global layers, L_umn) to its own early stop, then the generator on it, fixed (as cloud_checkpoint), in one run; 'joint': one training of everything (DIN's default: DUET-DIN.yaml). Chosen on Beauty's validation for SASRec and GRU4Rec (docs/study-log.md).",
    ),
    Key(
        "generator_lr_scale", DUET_ONLY, "float", 1.0, _positive_number(),
        'The generator and the Stable Weight Adapter learn at learning_rate times this.',
    ),
    Key(
        "duet_inference", DUET_ONLY, "str", 'generated', _inference_mode(),
        "Dynamic layers used to score: the generated ones, or the global ones alone (on-device fine-tuning is model Finetune).",
    ),
    Key(
        "duet_param_age", DUET_ONLY, "int", 0, _integer_at_least(0),
        "Evaluation only: the generator reads the window as it was this many interactions before the scored one (a device's parameters from an earlier request); the static layers read the whole history. No window that old: the global layers.",
    ),
    Key(
        "train_param_age", DUET_ONLY, "int", 0, _integer_at_least(0),
        "Training only: each device's generator reads the window as it was a random 0 to this many interactions before the target (drawn per device and step), as parameters age between requests; no window that old: the global layers.",
    ),
    Key(
        "finetune_steps", FINETUNE_ONLY, "int", 10, _integer_at_least(1),
        'SGD steps each device takes on its own window.',
    ),
    Key(
        "finetune_scope", FINETUNE_ONLY, "str", 'dynamic', _one_of(FINETUNE_SCOPES),
        "What a device tunes: 'dynamic' (the dynamic layers) or 'all' (every backbone parameter too; next-item backbones).",
    ),
    Key(
        "finetune_lr", FINETUNE_ONLY, "float", 0.001, _positive_number(),
        'SGD step size (chosen on ml-100k validation).',
    ),
]
# Every key's check, whichever model it belongs to.
DUET_KEYS = {key.name: key.check for key in KEYS if key.check is not None}


def model_keys(model):
    """The keys of ``model`` (one of :data:`MODELS`), in :data:`KEYS` order."""
    return [key for key in KEYS if model in key.models]


def validate_duet_settings(settings, model="DUET"):
    """Raise :class:`ConfigError` for the first key of ``model`` (one of :data:`MODELS`) whose value is missing or not
    allowed, alone or with the model's other keys."""
    check_backbone(settings.get("backbone"))
    for key in model_keys(model):
        value = settings.get(key.name)
        if key.check is not None and not key.check[0](value):
            raise ConfigError(key.name, value, key.check[1])
    COMBINATION_CHECKS[model](settings)


def _check_duet(settings):
    """The DUET keys that rule each other out."""
    if settings["freeze_backbone"] and settings["backbone_checkpoint"] is None:
        raise ConfigError("freeze_backbone", True, "false unless backbone_checkpoint names a trained backbone")
    if settings["cloud_checkpoint"] is not None:
        _check_fixed_cloud(settings)
    if settings["ppg_scope"] == "generator" and settings["umn_weight"] == 0:
        expected = "'all' with umn_weight 0 (nothing would train the backbone; SASRec's default is 'generator')"
        raise ConfigError("ppg_scope", "generator", expected)
    if settings["ppg_scope"] == "generator" and is_pairwise(settings["backbone"]):
        raise ConfigError("ppg_scope", "generator", "'all' with backbone DIN (next-item backbones only)")
    if settings["training_order"] == "cloud_first" and is_pairwise(settings["backbone"]):
        raise ConfigError("training_order", "cloud_first", "'joint' with backbone DIN (next-item backbones only)")
    if settings["dynamic_side"] == "item" and is_pairwise(settings["backbone"]):
        raise ConfigError("dynamic_side", "item", "'user' with backbone DIN (its generated MLP reads the candidate already)")
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
    if is_pairwise(settings["backbone"]):
        raise ConfigError("cloud_checkpoint", path, "null with backbone DIN (next-item backbones only)")


def _check_finetune(settings):
    """The fine-tuning baseline tunes a trained cloud model, and tunes a whole model on next-item backbones only."""
    if settings["cloud_checkpoint"] is None:
        expected = "the checkpoint of the cloud model each device tunes: a DUET trained with duet_inference: global"
        expected += " (with backbone DIN, a trained DIN too)" if is_pairwise(settings["backbone"]) else ""
        raise ConfigError("cloud_checkpoint", None, expected)
    if settings["finetune_scope"] == "all" and is_pairwise(settings["backbone"]):
        raise ConfigError("finetune_scope", "all", "'dynamic' with backbone DIN (whole-model tuning is next-item only)")


COMBINATION_CHECKS = {"DUET": _check_duet, "Finetune": _check_finetune}

YAML_HEADERS = {
    "DUET": "# DUET (WWW 2023).",
    "Finetune": "# Finetune: on-device fine-tuning of a trained DUET cloud model, the baseline DUET replaces.",
}
LAYERING = " The backbone's own RecBole yaml is loaded first; these keys are layered on top of it."
TABLE_START, TABLE_END = "<!-- duet keys: start (python -m recbole_duet.model.settings) -->", "<!-- duet keys: end -->"
# The page that holds the table, relative to the repository root.
CONFIGURATION_PAGE = os.path.join("docs", "configuration.md")


def yaml_value(value):
    return "~" if value is None else str(value)


def render_yaml(model):
    """``properties/model/<model>.yaml``: the default of each of ``model``'s keys, with its type and meaning as the
    comment."""
    lines = [YAML_HEADERS[model] + LAYERING]
    for key in model_keys(model):
        lines.append(f"{key.name}: {yaml_value(key.default)}".ljust(32) + f"# ({key.type}) {key.meaning}")
    return "\n".join(lines) + "\n"


def render_markdown_table(backbone_defaults):
    """The table of the plugin's keys in docs/configuration.md; ``backbone_defaults`` maps a backbone to the keys its
    own yaml (``DUET-<backbone>.yaml``) sets otherwise."""
    lines = [TABLE_START, "| key | models | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key in KEYS:
        default = f"`{yaml_value(key.default)}`"
        default += "".join(
            f"; `{yaml_value(values[key.name])}` with {backbone}"
            for backbone, values in sorted(backbone_defaults.items())
            if key.name in values
        )
        allowed = key.check[1] if key.check is not None else "see docs/backbones.md"
        lines.append(f"| `{key.name}` | {', '.join(key.models)} | {default} | {allowed} | {key.meaning} |")
    return "\n".join(lines + [TABLE_END])


def backbone_defaults(properties):
    """``{backbone: {key: value}}`` of the ``DUET-<backbone>.yaml`` files in ``properties/model``."""
    import glob

    import yaml

    found = {}
    for path in sorted(glob.glob(os.path.join(properties, "model", "DUET-*.yaml"))):
        with open(path, encoding="utf-8") as file:
            found[os.path.basename(path)[len("DUET-") : -len(".yaml")]] = yaml.safe_load(file) or {}
    return found


def replace_table(page, table):
    """``page`` with the text between the table markers replaced by ``table``."""
    start, end = page.index(TABLE_START), page.index(TABLE_END) + len(TABLE_END)
    return page[:start] + table + page[end:]


def main(root):
    """Rewrite ``properties/model/<model>.yaml`` of every model and the table in ``docs/configuration.md`` under
    ``root`` from :data:`KEYS`."""
    properties = os.path.join(root, "properties")
    for model in MODELS:
        with open(os.path.join(properties, "model", f"{model}.yaml"), "w", encoding="utf-8") as file:
            file.write(render_yaml(model))
    page_path = os.path.join(root, CONFIGURATION_PAGE)
    with open(page_path, encoding="utf-8") as file:
        page = file.read()
    with open(page_path, "w", encoding="utf-8") as file:
        file.write(replace_table(page, render_markdown_table(backbone_defaults(properties))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
