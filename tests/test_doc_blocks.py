"""Every fenced code block of the README and the docs runs here, each as its own test case (id: file, line of the
opening fence, language), so a block that went stale fails where it is written.

* ``python`` blocks are executed in a temporary working directory. What a block needs and this machine lacks is
  supplied, and nothing else of the block is changed:

  - a call of ``recbole_duet.run_recbole_duet`` trains on the tiny synthetic dataset of ``conftest.py`` instead of
    the dataset it names (ml-100k takes minutes here): the wrapper swaps the dataset and puts
    ``TINY_MODEL_CONFIG`` and the tiny data's settings *under* the block's ``config_dict``, whose own keys
    (backbone, epochs, ...) are kept;
  - a bundle folder ``duet-bundle`` is a tiny exported DUET(SASRec) bundle (``bundles.exported_bundle``), and the
    ml-100k item tokens of ``ML_100K_TOKENS`` in the block are replaced, in the text, by tokens of its vocabulary;
  - ``recbole_duet.device.request_parameters`` is a fake service answering from the bundle's generator graph,
    as ``tests/test_request_policy.py`` does for the device loop.

* ``yaml`` blocks are parsed with ``yaml.safe_load``; each is a DUET/RecBole config file (a block that is not one
  goes into ``NOT_CONFIG_YAML`` with its reason): every key must be one RecBole or the plugin reads, and the file,
  as written, is loaded through ``recbole_duet.config.Config`` (model DUET, on the tiny dataset; a ``data_path``
  line is pointed at the tiny data), which stops on an invalid value, and must set each of its keys.

* ``bash`` blocks are run by bash with an empty ``PATH``, so that no program starts: every command goes to bash's
  ``command_not_found_handle``, which records its arguments after the shell has expanded variables, loops and
  line continuations. Two textual substitutions make the commands shell-valid as a reader runs them: a
  ``<placeholder>`` (``saved/DUET-<time>.pth``) becomes a plain word, and the ``.venv/bin/`` prefix is dropped.
  Every recorded command line that starts one of the project's entry points is then checked, without running
  it, against that entry point's parser: ``run_recbole_duet.py`` / ``recbole-duet`` (and its ``export`` and
  ``serve`` subcommands), ``run_hyper.py`` / ``recbole-duet-hyper``, ``python -m benchmarks.<name>`` (its
  ``build_parser()``) and ``python -m recbole_duet...``. The runners' RecBole-style ``--key=value`` pairs must
  name a key RecBole or the plugin reads (a DUET key, a RecBole key, a backbone's key), and the values of DUET's
  keys and RecBole's training keys must pass the checks a run makes. A ``benchmarks/configs`` file named on a
  command line must exist.

* A fence of any other language fails unless ``OTHER_FENCES`` allows it with a reason.

``SKIPPED`` names the blocks that are covered elsewhere, by file, heading and a piece of their text.
"""

import contextlib
import glob
import importlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
from collections import namedtuple

import pytest
import yaml
from conftest import TINY_MODEL_CONFIG, write_atomic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Block = namedtuple("Block", "file line language heading text")

# (file, heading, a piece of the block's text): why the block is not run here.
SKIPPED = {
    ("README.md", "## Set-up: two commands", "run_recbole_duet.py"): (
        "the set-up's install-and-train command: CI (.ci/run) runs the set-up, and tests/test_docs.py checks both "
        "commands against CI's"
    ),
    ("README.md", "## Set-up: two commands", "pytest"): (
        "the set-up's test command: CI (.ci/run) runs it verbatim, and tests/test_docs.py checks that it is CI's"
    ),
    ("docs/deployment.md", "## Request policies", "def device_loop"): (
        "run as written against a tiny bundle and a fake service by "
        "tests/test_request_policy.py::test_the_device_loop_in_the_deployment_docs_runs"
    ),
}
# (file, heading, a piece of the block's text): why a fence that is not python, yaml or bash is allowed.
CLI_HELP = (
    "a command's --help output, not code: docs/cli_help.py writes it from the parser and "
    "tests/test_deploy_cli.py::test_the_command_line_page_is_what_the_parsers_print diffs it with the parser"
)
OTHER_FENCES = {
    ("docs/development.md", "## Layout", "recbole_duet/"): "a tree of the source files with a line on each, not code",
    ("docs/cli.md", "## recbole-duet", "usage: recbole-duet [-h]"): CLI_HELP,
    ("docs/cli.md", "## recbole-duet export", "usage: recbole-duet export"): CLI_HELP,
    ("docs/cli.md", "## recbole-duet serve", "usage: recbole-duet serve"): CLI_HELP,
    ("docs/cli.md", "## recbole-duet-hyper", "usage: recbole-duet-hyper"): CLI_HELP,
}
# (file, heading, a piece of the block's text) of yaml blocks that are not config files, with the reason.
NOT_CONFIG_YAML = {}

# The ml-100k item tokens the docs' device examples use, replaced by tokens of the tiny bundle's vocabulary.
ML_100K_TOKENS = ("242", "302", "377")

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<info>[^`]*)$")
PLACEHOLDER = re.compile(r"<([A-Za-z][\w-]*)>")
PROJECT_MENTION = re.compile(r"run_recbole_duet\.py|run_hyper\.py|recbole-duet|-m benchmarks\.|-m recbole_duet")
SHELL_PREAMBLE = (
    'command_not_found_handle() { printf "%s\\0" "${BASH_LINENO[0]}" "$#" "$@" >> "$COMMAND_LOG"; }\n'
    "set -euo pipefail\n"
)


def markdown_files():
    """README.md and every page under docs/, relative to the repository."""
    pages = sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
    return ["README.md"] + [os.path.relpath(page, REPO) for page in pages]


def fenced_blocks(file):
    """Every fenced code block of ``file``, with the line of its opening fence and the heading it sits under."""
    with open(os.path.join(REPO, file), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    blocks, heading, opened = [], "", None
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if opened is None:
            if match:
                opened = (number, match["fence"], match["info"].strip().split(" ")[0], len(match["indent"]), [])
            elif line.startswith("#"):
                heading = line.strip()
        elif match and match["fence"] == opened[1] and not match["info"].strip():
            start, _, language, indent, body = opened
            blocks.append(Block(file, start, language, heading, "\n".join(body) + ("\n" if body else "")))
            opened = None
        else:
            opened[4].append(line[opened[3] :] if line[: opened[3]].isspace() else line)
    if opened is not None:
        raise AssertionError(f"{file}:{opened[0]}: a code fence that is never closed")
    return blocks


def block_id(block):
    return f"{block.file}:{block.line}:{block.language or 'plain'}"


def listed(block, table):
    """The reason ``table`` gives for ``block``, or None."""
    for (file, heading, piece), reason in table.items():
        if block.file == file and block.heading == heading and piece in block.text:
            return reason
    return None


ALL_BLOCKS = [block for file in markdown_files() for block in fenced_blocks(file)]


def cases(language):
    """``language``'s blocks as parameters, the skipped ones marked with their reason."""
    chosen = [
        block
        for block in ALL_BLOCKS
        if (block.language not in ("python", "yaml", "bash") if language == "other" else block.language == language)
    ]
    params = []
    for block in chosen:
        reason = listed(block, SKIPPED)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(block, id=block_id(block), marks=marks))
    return params


def test_every_allow_list_entry_names_a_block():
    """A stale entry (its block moved, changed or went) would hide nothing; it must go or be corrected."""
    for table in (SKIPPED, OTHER_FENCES, NOT_CONFIG_YAML):
        for file, heading, piece in table:
            found = [b for b in ALL_BLOCKS if b.file == file and b.heading == heading and piece in b.text]
            assert len(found) == 1, f"{file}, {heading!r}, {piece!r}: {len(found)} blocks, expected one"


def test_the_blocks_are_found():
    assert {block.language for block in ALL_BLOCKS} >= {"python", "yaml", "bash"}
    assert all(block.text.strip() for block in ALL_BLOCKS), "an empty code block"


# ---------------------------------------------------------------------------------------------------------------
# python


def tiny_training_settings(root):
    return {
        **TINY_MODEL_CONFIG,
        "data_path": write_atomic_dataset(os.path.join(root, "data")),
        "checkpoint_dir": os.path.join(root, "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 8,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "show_progress": False,
        "state": "ERROR",
        "seed": 7,
    }


def train_on_tiny_data(monkeypatch, root):
    """``recbole_duet.run_recbole_duet`` on the tiny dataset, under the call's own config; returns its calls."""
    import recbole_duet

    original, calls = recbole_duet.run_recbole_duet, []

    def on_tiny_data(model=None, dataset=None, config_file_list=None, config_dict=None, **kwargs):
        calls.append({"model": model, "dataset": dataset, "config_dict": config_dict})
        settings = {**tiny_training_settings(root), **(config_dict or {})}
        return original(model=model, dataset="tiny", config_file_list=config_file_list, config_dict=settings, **kwargs)

    monkeypatch.setattr(recbole_duet, "run_recbole_duet", on_tiny_data)
    return calls


def fake_service(monkeypatch, bundle):
    """``request_parameters`` answered by the bundle's generator graph; returns the windows asked for."""
    from recbole_duet import device
    from recbole_duet.serving.bundle_generator import BundleGenerator

    generator, asked = BundleGenerator(bundle), []

    def request_parameters(url, window, token=None, dtype="float32", timeout_s=10):
        assert url.startswith("http"), url
        asked.append(list(window))
        return generator.generate([generator.vocabulary.ids(list(window), "window")], dtype)[0]

    monkeypatch.setattr(device, "request_parameters", request_parameters)
    return asked


@pytest.mark.parametrize("block", cases("python"))
def test_python_block(block, tmp_path, monkeypatch):
    from bundles import exported_bundle

    monkeypatch.chdir(tmp_path)
    code, training, asked = block.text, None, None
    if "run_recbole_duet" in code:
        training = train_on_tiny_data(monkeypatch, str(tmp_path))
    if "duet-bundle" in code:
        (tmp_path / "export").mkdir()
        folder, _, _, _ = exported_bundle(str(tmp_path / "export"), "SASRec", verify_users=0)
        shutil.move(folder, tmp_path / "duet-bundle")
        from recbole_duet.device.bundle import ItemVocabulary

        tokens = ItemVocabulary.from_bundle(str(tmp_path / "duet-bundle")).tokens[1:]
        for ml_100k, tiny in zip(ML_100K_TOKENS, tokens):
            code = code.replace(f'"{ml_100k}"', f'"{tiny}"')
        if "request_parameters" in code:
            asked = fake_service(monkeypatch, str(tmp_path / "duet-bundle"))
    # Blank lines first, so that a traceback names the block's own line of the page.
    exec(compile("\n" * block.line + code, os.path.join(REPO, block.file), "exec"), {"__name__": "doc_block"})
    if training is not None:
        assert training, "the block was expected to train through run_recbole_duet"
    if asked is not None:
        assert asked, "the block was expected to ask the service for parameters"


# ---------------------------------------------------------------------------------------------------------------
# yaml


def unknown_keys(keys):
    from recbole_duet.config import known_config_keys
    from recbole_duet.config_checks import near_misses

    known = known_config_keys()
    unknown = [key for key in keys if key not in known]
    suggestions = dict(near_misses(unknown, known))
    return [f"{key} (did you mean {suggestions[key]}?)" if key in suggestions else key for key in unknown]


@pytest.mark.parametrize("block", cases("yaml"))
def test_yaml_block(block, tmp_path, monkeypatch):
    from recbole_duet.config import Config

    settings = yaml.safe_load(block.text)
    if listed(block, NOT_CONFIG_YAML):
        return
    assert isinstance(settings, dict), "a config file holds 'key: value' lines"
    assert not unknown_keys(settings), f"keys neither RecBole nor the plugin reads: {unknown_keys(settings)}"
    monkeypatch.chdir(tmp_path)
    data_path = write_atomic_dataset(str(tmp_path / "data"))
    text = re.sub(r"^data_path:.*$", f"data_path: {data_path}", block.text, flags=re.MULTILINE)
    config_file = tmp_path / "block.yaml"
    config_file.write_text(text, encoding="utf-8")
    overrides = None if "data_path" in settings else {"data_path": data_path}
    config = Config(model="DUET", dataset="tiny", config_file_list=[str(config_file)], config_dict=overrides)
    assert config["model"] == "DUET"
    for key, value in settings.items():
        if key != "data_path":
            assert config[key] == value, f"{key}: the file says {value!r}, the run reads {config[key]!r}"


# ---------------------------------------------------------------------------------------------------------------
# bash


def shell_commands(block, folder):
    """``[(page line, argv)]`` of every command the block runs, as bash expands it, without starting any."""
    text = PLACEHOLDER.sub(lambda match: f"PLACEHOLDER-{match[1]}", block.text).replace(".venv/bin/", "")
    empty, log = folder / "empty-path", folder / "commands"
    empty.mkdir()
    log.write_bytes(b"")
    script = folder / "block.sh"
    script.write_text(SHELL_PREAMBLE + text, encoding="utf-8")
    finished = subprocess.run(
        [shutil.which("bash"), str(script)],
        cwd=folder,
        env={"PATH": str(empty), "COMMAND_LOG": str(log), "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, f"bash stopped ({finished.returncode}): {finished.stderr.strip()}"
    fields, commands = log.read_bytes().decode().split("\0")[:-1], []
    while fields:
        line, count = int(fields[0]), int(fields[1])
        commands.append((block.line + line - SHELL_PREAMBLE.count("\n"), fields[2 : 2 + count]))
        fields = fields[2 + count :]
    return commands


def entry_point(argv):
    """``(entry point, its arguments)`` when ``argv`` starts one of the project's command lines, else None."""
    program, rest = argv[0], argv[1:]
    if program in ("recbole-duet", "recbole-duet-hyper"):
        return program, rest
    if program in ("python", "python3") and rest:
        if rest[0] == "run_recbole_duet.py":
            return "recbole-duet", rest[1:]
        if rest[0] == "run_hyper.py":
            return "recbole-duet-hyper", rest[1:]
        if rest[0] == "-m" and len(rest) > 1 and rest[1].split(".")[0] in ("benchmarks", "recbole_duet"):
            return rest[1], rest[2:]
    return None


def parser_errors(parser, args, known_only=False):
    """``(argparse's error or None, the arguments it left)``, without letting it exit. An option must be spelled
    out: argparse takes an abbreviation (``--only-seed``), which a renamed or added option would silently change."""
    parser.allow_abbrev, message = False, io.StringIO()
    try:
        with contextlib.redirect_stderr(message):
            if known_only:
                return None, parser.parse_known_args(args)[1]
            parser.parse_args(args)
            return None, []
    except SystemExit:
        return message.getvalue().strip().splitlines()[-1], []


def override_errors(pairs):
    """What is wrong with a runner's RecBole-style ``--key=value`` pairs: the form, unknown keys, bad values of
    DUET's keys and of RecBole's training keys (values naming a ``<placeholder>`` are not checked)."""
    from recbole_duet.config import Config
    from recbole_duet.config_checks import check_training_keys
    from recbole_duet.errors import ConfigError
    from recbole_duet.model.backbones import check_backbone
    from recbole_duet.model.settings import DUET_KEYS

    errors, values = [], {}
    for pair in pairs:
        key, equals, value = pair[2:].partition("=")
        if not pair.startswith("--") or not equals or "=" in value:
            errors.append(f"{pair!r} is not a --key=value pair (RecBole would ignore it)")
        else:
            values[key] = value
    errors += [f"unknown key {key}" for key in unknown_keys(values)]
    values = Config._convert_config_dict(None, {k: v for k, v in values.items() if "PLACEHOLDER-" not in str(v)})
    try:
        check_training_keys(values)
        if "backbone" in values:
            check_backbone(values["backbone"])
        for key, value in values.items():
            is_valid, expected = DUET_KEYS.get(key, (lambda value: True, ""))
            if not is_valid(value):
                raise ConfigError(key, value, expected)
    except ConfigError as error:
        errors.append(str(error))
    return errors


def command_errors(name, args):
    """What the entry point ``name``'s own parser (and, for the runners, RecBole's config keys) reject."""
    from recbole_duet.cli import build_hyper_parser, build_parser
    from recbole_duet.deploy.cli import build_deploy_parser

    if name == "recbole-duet" and args[:1] in (["export"], ["serve"]):
        error, _ = parser_errors(build_deploy_parser(), args)
        return [error] if error else []
    if name in ("recbole-duet", "recbole-duet-hyper"):
        parser = build_parser() if name == "recbole-duet" else build_hyper_parser()
        error, left = parser_errors(parser, args, known_only=True)
        return [error] if error else override_errors(left)
    try:
        if importlib.util.find_spec(name) is None:
            return [f"no module {name}"]
    except ModuleNotFoundError as error:
        return [str(error)]
    module = importlib.import_module(name)
    if not hasattr(module, "build_parser"):
        return [] if not args else [f"{name} takes no arguments here, or give it a build_parser() to check them by"]
    error, _ = parser_errors(module.build_parser(), args)
    return [error] if error else []


def missing_repository_files(args):
    """``benchmarks/configs`` files named on a command line (alone or as ``--key=path``) that do not exist."""
    paths = [arg.split("=")[-1] for arg in args]
    return [path for path in paths if path.startswith("benchmarks/configs/") and not os.path.isfile(f"{REPO}/{path}")]


@pytest.mark.parametrize("block", cases("bash"))
def test_bash_block(block, tmp_path):
    commands = shell_commands(block, tmp_path)
    problems, checked = [], 0
    for line, argv in commands:
        started = entry_point(argv)
        if started is None:
            continue
        checked += 1
        name, args = started
        errors = command_errors(name, args) + [f"no such file {path}" for path in missing_repository_files(args)]
        problems += [f"{block.file}:{line}: {' '.join(argv)}: {error}" for error in errors]
    assert not problems, "\n".join(problems)
    if PROJECT_MENTION.search(block.text):
        assert checked, "the block names the project's command lines, but none was found among its commands"


# ---------------------------------------------------------------------------------------------------------------
# any other language


@pytest.mark.parametrize("block", cases("other"))
def test_other_fence(block):
    reason = listed(block, OTHER_FENCES)
    if reason is None:
        pytest.fail(f"a ```{block.language} block: run it here as python, yaml or bash, or allow it in OTHER_FENCES")
    pytest.skip(reason)
