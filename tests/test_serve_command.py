"""``serve()`` in this process, with uvicorn's ``run`` replaced by a recorder: what uvicorn would be started with,
the start-up line (out before uvicorn starts), the settings handed to the workers through the environment (and the
app the worker factory builds from them), the metrics folder for several workers, and the refusals of bad settings.
The live-server tests (tests/test_serving.py) start the real thing in a subprocess, where mutation testing cannot
see it."""

import json
import os
import sys
import tempfile
from dataclasses import asdict

import pytest
import uvicorn
from bundles import exported_bundle
from fastapi.testclient import TestClient

from recbole_duet.device.bundle import BundleError
from recbole_duet.serving.app import SETTINGS_ENV, ServeSettings, app_from_environment
from recbole_duet.serving.server import serve

MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
FACTORY = "recbole_duet.serving.app:app_from_environment"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder, manifest, *_ = exported_bundle(str(tmp_path_factory.mktemp("GRU4Rec")), "GRU4Rec", verify_users=0)
    return folder, manifest


class Terminal:
    """A stand-in for stderr that, like a pipe's buffer, shows what was written only once it is flushed."""

    def __init__(self):
        self.pending, self.shown = "", ""

    def write(self, text):
        self.pending += text
        return len(text)

    def flush(self):
        self.shown += self.pending
        self.pending = ""


class Launches:
    """The calls of ``uvicorn.run``: their arguments, and what the worker processes would have found then."""

    def __init__(self, terminal):
        self.terminal = terminal
        self.calls = []
        self.on_run = None

    def __call__(self, *args, **kwargs):
        self.calls.append(
            {
                "args": args,
                "kwargs": kwargs,
                "settings": json.loads(os.environ[SETTINGS_ENV]),
                "metrics folder": os.environ.get(MULTIPROC),
                "stderr shown": self.terminal.shown,
            }
        )
        if self.on_run:
            self.on_run()

    def serve(self, *args, **kwargs):
        """``serve(*args, **kwargs)`` with stderr going to the terminal stand-in (set here, in the test's call
        phase: pytest puts its own capture back at the start of each phase)."""
        saved, sys.stderr = sys.stderr, self.terminal
        try:
            serve(*args, **kwargs)
        finally:
            sys.stderr = saved


@pytest.fixture
def launches(monkeypatch):
    # serve() writes os.environ itself: set, then delete, so that monkeypatch puts back what was there (nothing).
    for name in (SETTINGS_ENV, MULTIPROC):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    recorder = Launches(Terminal())
    monkeypatch.setattr(uvicorn, "run", recorder)
    return recorder


def line(bundle, where, workers, guard):
    folder, manifest = bundle
    return (
        f"recbole-duet serve: bundle {folder} (GRU4Rec, model_version {manifest['model_version']}) on {where}, "
        f"{workers}, {guard}\n"
    )


def test_by_default_one_worker_on_loopback_port_8000_logs_info_and_every_request(bundle, launches):
    settings = ServeSettings(bundle=bundle[0])
    launches.serve(settings)
    assert launches.calls == [
        {
            "args": (FACTORY,),
            "kwargs": {
                "factory": True, "host": "127.0.0.1", "port": 8000, "workers": 1, "log_level": "info", "access_log": True,
            },
            "settings": asdict(settings),
            "metrics folder": None,  # one worker: its own registry
            "stderr shown": line(bundle, "http://127.0.0.1:8000", "1 worker", "no token"),
        }
    ]
    assert launches.terminal.pending == ""


def test_the_options_reach_uvicorn_and_the_workers_rebuild_the_same_app(bundle, launches, tmp_path):
    token = tmp_path / "token"
    token.write_text("w0rker\n")
    settings = ServeSettings(bundle=bundle[0], token_file=str(token), max_body_bytes=100, max_devices_per_request=2)
    answers = []

    def worker():  # what uvicorn's worker would do: call the factory, then serve requests
        with TestClient(app_from_environment()) as client:
            answers.append(client.get("/healthz").json())
            answers.append(client.post("/v1/generate", json={"window": ["i1"]}).status_code)
            auth = {"Authorization": "Bearer w0rker"}
            answers.append(client.post("/v1/generate", json={"window": ["i1"]}, headers=auth).status_code)
            answers.append(client.post("/v1/generate/batch", json={"windows": [["i1"]] * 3}, headers=auth).json())
            answers.append(client.post("/v1/generate", content=b" " * 101, headers=auth).status_code)

    launches.on_run = worker
    launches.serve(settings, host="0.0.0.0", port=9123, workers=1, log_level="warning", access_log=False)
    (call,) = launches.calls
    assert call["kwargs"] == {
        "factory": True, "host": "0.0.0.0", "port": 9123, "workers": 1, "log_level": "warning", "access_log": False,
    }
    assert call["settings"] == asdict(settings) and call["settings"]["token_file"] == str(token)
    assert call["stderr shown"] == line(bundle, "http://0.0.0.0:9123", "1 worker", "a bearer token required")
    assert answers == [
        {"status": "ok", "model_version": bundle[1]["model_version"], "queued": 0},
        401,
        200,
        {"error": "windows: holds 3 windows, the limit is 2 a request"},
        413,
    ]


def test_several_workers_share_a_new_metrics_folder(bundle, launches):
    launches.serve(ServeSettings(bundle=bundle[0]), workers=2)
    (call,) = launches.calls
    folder = call["metrics folder"]
    try:
        assert call["kwargs"]["workers"] == 2 and os.environ[MULTIPROC] == folder
        assert os.path.dirname(folder) == tempfile.gettempdir()
        assert os.path.basename(folder).startswith("recbole-duet-metrics-") and os.listdir(folder) == []
        assert call["stderr shown"] == line(bundle, "http://127.0.0.1:8000", "2 workers", "no token")
    finally:
        os.rmdir(folder)


def test_several_workers_keep_a_metrics_folder_already_given(bundle, launches, monkeypatch, tmp_path):
    monkeypatch.setenv(MULTIPROC, str(tmp_path))
    launches.serve(ServeSettings(bundle=bundle[0]), workers=3)
    assert [call["metrics folder"] for call in launches.calls] == [str(tmp_path)]


def test_an_open_host_without_a_token_is_refused_before_anything_starts(bundle, launches):
    with pytest.raises(ValueError) as error:
        launches.serve(ServeSettings(bundle=bundle[0]), host="0.0.0.0")
    assert str(error.value) == (
        "--host 0.0.0.0 is reachable from other machines and no --token-file is given: anyone could use the "
        "service. Give a --token-file, or pass --allow-unauthenticated to serve without one."
    )
    assert launches.calls == [] and launches.terminal.shown + launches.terminal.pending == ""
    assert SETTINGS_ENV not in os.environ
    launches.serve(ServeSettings(bundle=bundle[0]), host="0.0.0.0", allow_unauthenticated=True)
    assert [call["kwargs"]["host"] for call in launches.calls] == ["0.0.0.0"]


def test_an_unreadable_token_file_or_a_folder_that_is_no_bundle_is_refused(bundle, launches, tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ValueError) as error:
        launches.serve(ServeSettings(bundle=bundle[0], token_file=str(missing)))
    assert str(error.value) == f"--token-file '{missing}' cannot be read: No such file or directory"
    with pytest.raises(BundleError) as error:
        launches.serve(ServeSettings(bundle=str(tmp_path)))
    manifest_path = os.path.join(str(tmp_path), "manifest.json")
    assert str(error.value) == f"'{tmp_path}' is not a recbole-duet bundle: '{manifest_path}' does not exist."
    assert launches.calls == []
