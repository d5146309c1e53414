"""``recbole-duet export`` and ``recbole-duet serve`` in this process (recbole_duet/deploy/cli.py): what the parsers
read, what the commands hand the exporter and the server, what they print and how they stop; and docs/cli.md, the
command-line page, against what the parsers print.

The exporter and the server are recording fakes: ``_export`` and ``_serve`` import them when they run, so the fakes
replace the attributes of their modules. tests/test_deploy.py and tests/test_serving.py run the real commands in a
subprocess, which a mutation run cannot see; these tests are the ones it runs for this module.
"""

import dataclasses
import importlib.util
import os
import re
import sys

import pytest

from recbole_duet.cli import main
from recbole_duet.deploy.cli import build_deploy_parser, deploy_main
from recbole_duet.device.bundle import BundleError
from recbole_duet.errors import CheckpointError, ConfigError, DatasetNotFoundError
from recbole_duet.serving.app import ServeSettings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPORT_DEFAULTS = {
    "command": "export", "checkpoint": "ck.pth", "out": "bundle", "data_path": None, "verify_users": 1000,
}
SERVE_DEFAULTS = {
    "command": "serve",
    "bundle": "bundle",
    "host": "127.0.0.1",
    "port": 8000,
    "workers": 1,
    "token_file": None,
    "allow_unauthenticated": False,
    "max_batch": 256,
    "max_wait_ms": 2.0,
    "max_queue": 4096,
    "max_body_bytes": 1048576,
    "max_devices_per_request": 1024,
    "threads": 1,
    "log_level": "info",
    "no_access_log": False,
}
# Every serve option set to a value other than its default (and other than ServeSettings' defaults).
SERVE_GIVEN = [
    "serve", "other-bundle", "--host", "0.0.0.0", "--port", "9001", "--workers", "3", "--token-file", "token.txt",
    "--allow-unauthenticated", "--max-batch", "32", "--max-wait-ms", "0.5", "--max-queue", "64",
    "--max-body-bytes", "2048", "--max-devices-per-request", "8", "--threads", "2", "--log-level", "debug",
    "--no-access-log",
]
LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]
INT_OPTIONS = [
    ("export", "--verify_users"),
    ("serve", "--port"),
    ("serve", "--workers"),
    ("serve", "--max-batch"),
    ("serve", "--max-queue"),
    ("serve", "--max-body-bytes"),
    ("serve", "--max-devices-per-request"),
    ("serve", "--threads"),
]


def parsed(argv):
    return vars(build_deploy_parser().parse_args(argv))


def refused(argv, capsys):
    """argparse's message for ``argv``, which it must refuse with exit code 2."""
    with pytest.raises(SystemExit) as stop:
        build_deploy_parser().parse_args(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


# ---------------------------------------------------------------------------------------------------------------
# the parsers


def test_export_reads_its_defaults():
    assert parsed(["export", "ck.pth", "--out", "bundle"]) == EXPORT_DEFAULTS


def test_export_reads_every_option():
    argv = ["export", "ck.pth", "--out", "b2", "--data_path", "/data", "--verify_users", "0"]
    assert parsed(argv) == {**EXPORT_DEFAULTS, "out": "b2", "data_path": "/data", "verify_users": 0}


def test_serve_reads_its_defaults():
    assert parsed(["serve", "bundle"]) == SERVE_DEFAULTS


def test_serve_reads_every_option():
    assert parsed(SERVE_GIVEN) == {
        "command": "serve",
        "bundle": "other-bundle",
        "host": "0.0.0.0",
        "port": 9001,
        "workers": 3,
        "token_file": "token.txt",
        "allow_unauthenticated": True,
        "max_batch": 32,
        "max_wait_ms": 0.5,
        "max_queue": 64,
        "max_body_bytes": 2048,
        "max_devices_per_request": 8,
        "threads": 2,
        "log_level": "debug",
        "no_access_log": True,
    }


@pytest.mark.parametrize(
    "flag, dest", [("--allow-unauthenticated", "allow_unauthenticated"), ("--no-access-log", "no_access_log")]
)
def test_the_serve_flags_take_no_value(flag, dest):
    assert parsed(["serve", flag, "bundle"]) == {**SERVE_DEFAULTS, dest: True}  # the bundle is not the flag's value
    assert parsed(["serve", "bundle", flag]) == {**SERVE_DEFAULTS, dest: True}


def test_a_command_is_required(capsys):
    assert refused([], capsys).endswith("error: the following arguments are required: command")


def test_export_requires_the_checkpoint_and_out(capsys):
    assert refused(["export", "ck.pth"], capsys).endswith("error: the following arguments are required: --out")
    assert refused(["export", "--out", "b"], capsys).endswith("error: the following arguments are required: checkpoint")


def test_serve_requires_the_bundle(capsys):
    assert refused(["serve"], capsys).endswith("error: the following arguments are required: bundle")


@pytest.mark.parametrize("command, option", INT_OPTIONS)
@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_integer_options_refuse_other_values(command, option, value, capsys):
    argv = [command, "target", option, value] + (["--out", "b"] if command == "export" else [])
    assert refused(argv, capsys).endswith(f"error: argument {option}: invalid int value: '{value}'")


def test_the_batch_wait_is_a_float(capsys):
    assert parsed(["serve", "bundle", "--max-wait-ms", "7"])["max_wait_ms"] == 7.0
    assert isinstance(parsed(["serve", "bundle", "--max-wait-ms", "7"])["max_wait_ms"], float)
    assert refused(["serve", "bundle", "--max-wait-ms", "soon"], capsys).endswith(
        "error: argument --max-wait-ms: invalid float value: 'soon'"
    )


@pytest.mark.parametrize("level", LOG_LEVELS)
def test_every_uvicorn_log_level_is_accepted(level):
    assert parsed(["serve", "bundle", "--log-level", level])["log_level"] == level


@pytest.mark.parametrize("level", ["verbose", "INFO", "warn"])
def test_other_log_levels_are_refused(level, capsys):
    assert refused(["serve", "bundle", "--log-level", level], capsys).endswith(
        f"error: argument --log-level: invalid choice: '{level}' "
        "(choose from 'critical', 'error', 'warning', 'info', 'debug', 'trace')"
    )


def test_the_deploy_parsers_help_names_both_subcommands(monkeypatch):
    """``recbole-duet --help`` prints the training parser's help; the deploy parser's own help is this one."""
    monkeypatch.setenv("COLUMNS", "200")
    text = build_deploy_parser().format_help()
    assert text.startswith("usage: recbole-duet [-h] {export,serve} ...\n\nDeploy a trained DUET model.\n")
    assert re.search(r"\n +export +checkpoint -> bundle \(ONNX graphs, manifest, item vocabulary\)\n", text)
    assert re.search(r"\n +serve +serve a bundle's parameter generator over HTTP\n", text)


# ---------------------------------------------------------------------------------------------------------------
# recbole-duet export


@pytest.fixture
def exporter(monkeypatch):
    """``export_bundle`` replaced: records its arguments and the command line it sees, returns ``manifest``."""
    import recbole_duet.deploy.export

    record = {"calls": [], "manifest": {"backbone": "GRU4Rec", "model_version": "0123abcd"}, "raise": None}

    def export_bundle(*args, **kwargs):
        record["calls"].append((args, kwargs, list(sys.argv)))
        if record["raise"] is not None:
            raise record["raise"]
        return record["manifest"]

    monkeypatch.setattr(recbole_duet.deploy.export, "export_bundle", export_bundle)
    monkeypatch.setattr(sys, "argv", ["recbole-duet", "export", "ck.pth", "--out", "b", "--epochs=3"])
    return record


def test_export_hands_the_exporter_the_defaults_and_says_what_it_wrote(exporter, capsys):
    assert deploy_main(["export", "ck.pth", "--out", "b"]) is None
    assert exporter["calls"] == [(("ck.pth", "b", None, 1000), {}, ["recbole-duet"])]
    assert capsys.readouterr() == ("exported GRU4Rec model version 0123abcd to b (not verified)\n", "")


def test_export_hands_the_exporter_every_option(exporter, capsys):
    exporter["manifest"] = {"backbone": "SASRec", "model_version": "ffff", "verification": {"users": 5}}
    deploy_main(["export", "other.pth", "--out", "b2", "--data_path", "/data", "--verify_users", "5"])
    assert exporter["calls"] == [(("other.pth", "b2", "/data", 5), {}, ["recbole-duet"])]
    assert capsys.readouterr().out == "exported SASRec model version ffff to b2 ({'users': 5})\n"


def test_export_leaves_no_flag_on_the_command_line_for_recboles_config(exporter):
    """RecBole's Config reads ``--key=value`` pairs from sys.argv: the export's own are not config overrides."""
    deploy_main(["export", "ck.pth", "--out", "b"])
    assert exporter["calls"][0][2] == ["recbole-duet"] and sys.argv == ["recbole-duet"]


@pytest.mark.parametrize(
    "error",
    [
        CheckpointError("'ck.pth' is not a checkpoint"),
        ConfigError("backbone", "Nope", "a RecBole model"),
        DatasetNotFoundError("dataset 'tiny' not found"),
        BundleError("the bundle does not reproduce the model"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_export_stops_on_a_users_mistake_with_one_line(exporter, capsys, error):
    exporter["raise"] = error
    with pytest.raises(SystemExit) as stop:
        deploy_main(["export", "ck.pth", "--out", "b"])
    assert stop.value.code == f"error: {error}"
    assert capsys.readouterr() == ("", "")


def test_export_lets_other_errors_through(exporter):
    exporter["raise"] = RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):
        deploy_main(["export", "ck.pth", "--out", "b"])


def test_the_training_command_runs_export(exporter, capsys):
    assert main(["export", "ck.pth", "--out", "b"]) is None
    assert exporter["calls"] == [(("ck.pth", "b", None, 1000), {}, ["recbole-duet"])]
    assert capsys.readouterr().out.startswith("exported GRU4Rec")


# ---------------------------------------------------------------------------------------------------------------
# recbole-duet serve


@pytest.fixture
def server(monkeypatch):
    """``serve`` replaced: records its arguments."""
    import recbole_duet.serving.server

    record = {"calls": [], "raise": None}

    def serve(*args, **kwargs):
        record["calls"].append((args, kwargs))
        if record["raise"] is not None:
            raise record["raise"]

    monkeypatch.setattr(recbole_duet.serving.server, "serve", serve)
    return record


def test_serve_hands_the_server_the_defaults(server):
    assert deploy_main(["serve", "bundle"]) is None
    ((args, kwargs),) = server["calls"]
    settings, *rest = args
    assert type(settings) is ServeSettings
    assert dataclasses.asdict(settings) == {
        "bundle": "bundle",
        "token_file": None,
        "max_batch": 256,
        "max_wait_ms": 2.0,
        "max_queue": 4096,
        "max_body_bytes": 1048576,
        "max_devices_per_request": 1024,
        "threads": 1,
    }
    assert rest == ["127.0.0.1", 8000, 1, False, "info"] and kwargs == {"access_log": True}


def test_serve_hands_the_server_every_option(server):
    deploy_main(SERVE_GIVEN)
    ((args, kwargs),) = server["calls"]
    settings, *rest = args
    assert type(settings) is ServeSettings
    assert dataclasses.asdict(settings) == {
        "bundle": "other-bundle",
        "token_file": "token.txt",
        "max_batch": 32,
        "max_wait_ms": 0.5,
        "max_queue": 64,
        "max_body_bytes": 2048,
        "max_devices_per_request": 8,
        "threads": 2,
    }
    assert rest == ["0.0.0.0", 9001, 3, True, "debug"] and kwargs == {"access_log": False}


@pytest.mark.parametrize(
    "error",
    [BundleError("manifest.json: no such file"), ValueError("--token-file 'token.txt' is empty")],
    ids=lambda error: type(error).__name__,
)
def test_serve_stops_on_a_users_mistake_with_one_line(server, capsys, error):
    server["raise"] = error
    with pytest.raises(SystemExit) as stop:
        deploy_main(["serve", "bundle"])
    assert stop.value.code == f"error: {error}"
    assert capsys.readouterr() == ("", "")


def test_serve_lets_other_errors_through(server):
    server["raise"] = OSError("address already in use")
    with pytest.raises(OSError, match="address already in use"):
        deploy_main(["serve", "bundle"])


def test_serve_reads_its_argv_not_the_processes(server, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["recbole-duet", "serve", "elsewhere", "--port", "1"])
    deploy_main(["serve", "bundle"])
    ((args, _),) = server["calls"]
    assert args[0].bundle == "bundle" and args[2] == 8000
    assert sys.argv == ["recbole-duet", "serve", "elsewhere", "--port", "1"]  # serve leaves the command line alone


def test_the_training_command_runs_serve(server):
    assert main(["serve", "bundle", "--port", "9002"]) is None
    ((args, kwargs),) = server["calls"]
    assert args[0].bundle == "bundle" and args[1:] == ("127.0.0.1", 9002, 1, False, "info")


def test_the_training_commands_help_names_the_deployment_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'recbole-duet export --help'" in text and "'recbole-duet serve --help'" in text


# ---------------------------------------------------------------------------------------------------------------
# docs/cli.md


def test_the_command_line_page_is_what_the_parsers_print(monkeypatch):
    """docs/cli.md is written by ``python docs/cli_help.py``; a changed help string, default or choice fails here
    until it is rerun. (tests/test_docs.py is left out of mutation runs; this file is not.)"""
    spec = importlib.util.spec_from_file_location("cli_help", os.path.join(REPO, "docs", "cli_help.py"))
    cli_help = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli_help)
    monkeypatch.setenv("COLUMNS", "37")  # the page must not depend on the terminal it is written from
    monkeypatch.setattr(sys, "argv", ["pytest-runner"])  # nor on the program's name (the training parsers')
    with open(os.path.join(REPO, "docs", "cli.md"), encoding="utf-8") as page:
        assert cli_help.page() == page.read(), "the parsers changed: run python docs/cli_help.py"
