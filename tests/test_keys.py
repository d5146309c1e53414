"""Every key of the plugin's models is defined once (recbole_duet.model.settings.KEYS): each model's yaml defaults, the
checks and the table of docs/configuration.md are written from it, and none of them may drift."""

import os
import shutil

import pytest
import yaml

from recbole_duet.model.settings import (
    CONFIGURATION_PAGE,
    DUET_KEYS,
    KEYS,
    MODELS,
    TABLE_END,
    TABLE_START,
    backbone_defaults,
    model_keys,
    render_markdown_table,
    render_yaml,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROPERTIES = os.path.join(REPO, "properties")


def read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as file:
        return file.read()


@pytest.mark.parametrize("model", MODELS)
def test_each_models_yaml_is_written_from_the_keys(model):
    assert read("properties", "model", f"{model}.yaml") == render_yaml(model), "run: python -m recbole_duet.model.settings"


@pytest.mark.parametrize("model", MODELS)
def test_the_yaml_defaults_are_the_keys_defaults_and_pass_their_checks(model):
    defaults = yaml.safe_load(read("properties", "model", f"{model}.yaml"))
    assert list(defaults) == [key.name for key in model_keys(model)]
    for key in model_keys(model):
        assert defaults[key.name] == key.default and type(defaults[key.name]) is type(key.default), key.name
        if key.check is not None:
            assert key.check[0](key.default), key.name
    assert set(DUET_KEYS) == {key.name for key in KEYS} - {"backbone"}


def test_every_key_belongs_to_a_model_and_the_finetune_keys_to_finetune_alone():
    assert all(key.models and set(key.models) <= set(MODELS) for key in KEYS)
    assert {key.name for key in model_keys("Finetune")} - {key.name for key in model_keys("DUET")} == {
        "finetune_steps", "finetune_scope", "finetune_lr"
    }


def test_the_docs_table_is_written_from_the_keys():
    page = read(CONFIGURATION_PAGE)
    table = page[page.index(TABLE_START) : page.index(TABLE_END) + len(TABLE_END)]
    assert table == render_markdown_table(backbone_defaults(PROPERTIES)), "run: python -m recbole_duet.model.settings"


def test_a_backbones_own_defaults_name_known_keys_with_allowed_values():
    for backbone, values in backbone_defaults(PROPERTIES).items():
        for name, value in values.items():
            assert name in DUET_KEYS, (backbone, name)
            assert DUET_KEYS[name][0](value), (backbone, name, value)
    assert backbone_defaults(PROPERTIES)["SASRec"] == {"ppg_scope": "generator"}


def test_the_rewrite_command_brings_stale_files_back_to_the_keys(tmp_path):
    """``python -m recbole_duet.model.settings ROOT`` rewrites each model's yaml and the table of the configuration
    page under ROOT, leaving the rest of the page and the backbones' own yaml files as they were."""
    from recbole_duet.model.settings import main

    shutil.copytree(PROPERTIES, tmp_path / "properties")
    (tmp_path / CONFIGURATION_PAGE).parent.mkdir(parents=True)
    page = read(CONFIGURATION_PAGE)
    table_start, table_end = page.index(TABLE_START), page.index(TABLE_END) + len(TABLE_END)
    stale_page = "intro kept\n" + page[:table_start] + TABLE_START + "\n| stale |\n" + TABLE_END + page[table_end:]
    (tmp_path / CONFIGURATION_PAGE).write_text(stale_page, encoding="utf-8")
    for model in MODELS:
        (tmp_path / "properties" / "model" / f"{model}.yaml").write_text("stale: 1\n", encoding="utf-8")
    main(str(tmp_path))
    for model in MODELS:
        assert (tmp_path / "properties" / "model" / f"{model}.yaml").read_text(encoding="utf-8") == render_yaml(model)
    assert (tmp_path / CONFIGURATION_PAGE).read_text(encoding="utf-8") == "intro kept\n" + page
    for path in (tmp_path / "properties").rglob("*.yaml"):  # the backbones' own files are not the rewrite's
        if path.parent.name != "model" or path.stem not in MODELS:
            assert path.read_text(encoding="utf-8") == read(*path.relative_to(tmp_path).parts)


def test_a_key_with_several_backbone_defaults_lists_each_in_backbone_order():
    table = render_markdown_table({"SASRec": {"ppg_scope": "generator"}, "GRU4Rec": {"ppg_scope": "generator", "x": 1}})
    (row,) = [line for line in table.splitlines() if line.startswith("| `ppg_scope` |")]
    assert "| `all`; `generator` with GRU4Rec; `generator` with SASRec |" in row
