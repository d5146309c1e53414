"""The service against a live server on 127.0.0.1: token, payloads, batching, back-pressure, 4xx for every bad
input (property-based fuzzing included) and metrics."""

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from bundles import exported_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recbole_duet.device import DeviceModel, ServiceError, request_parameters
from recbole_duet.device.bundle import BundleError
from recbole_duet.serving.app import ServeSettings
from recbole_duet.serving.bundle_generator import BundleGenerator
from recbole_duet.serving.server import check_settings

TOKEN = "test-token-5f1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """``recbole-duet serve`` in a child process, stopped by its own pid."""

    def __init__(self, bundle, *options, quiet=True, output=None):
        self.url = f"http://127.0.0.1:{free_port()}"
        command = [sys.executable, "-c", "from recbole_duet.cli import main; main()", "serve", bundle]
        logging = ["--log-level", "warning", "--no-access-log"] if quiet else []
        self.process = subprocess.Popen([*command, "--port", self.url.rsplit(":", 1)[1], *logging, *options], stdout=output, stderr=output)
        self.client = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {self.process.poll()})")
            time.sleep(0.1)

    def post(self, path, body=None, headers=AUTH, **kwargs):
        content = body if isinstance(body, (bytes, str)) else json.dumps(body, separators=(",", ":"))
        return self.client.post(path, content=content, headers=headers, **kwargs)

    def metric(self, line_start):
        """Sum of the samples whose line starts with ``line_start`` in /metrics."""
        text = self.client.get("/metrics", headers=AUTH).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))

    def stop(self):
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    folder, *_ = exported_bundle(str(root), "SASRec", verify_users=0)
    (root / "token").write_text(TOKEN + "\n")
    return folder, str(root / "token")


@pytest.fixture(scope="module")
def server(bundle):
    folder, token_file = bundle
    live = LiveServer(folder, "--token-file", token_file, "--max-wait-ms", "20", "--max-body-bytes", "4096")
    yield live
    live.stop()


def test_the_service_says_where_it_listens_and_logs_each_request(bundle, tmp_path):
    folder, token_file = bundle
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        live = LiveServer(folder, "--token-file", token_file, quiet=False, output=log)  # uvicorn: access log to stdout
        try:
            assert live.post("/v1/generate", {"window": ["i3"]}).status_code == 200
        finally:
            live.stop()
    text = log_path.read_text()
    version = DeviceModel(folder).manifest["model_version"]
    first = text.splitlines()[0]
    assert first.startswith(f"recbole-duet serve: bundle {folder} (SASRec, model_version {version}) on {live.url}")
    assert first.endswith("1 worker, a bearer token required")
    assert any('"POST /v1/generate HTTP/1.1" 200' in line for line in text.splitlines()), text[-600:]


def test_the_device_client_gets_parameters_and_names_a_refusal(server, bundle):
    device = DeviceModel(bundle[0])
    payload = request_parameters(server.url, ["i3", "i4"], token=TOKEN)
    assert [token for token, _ in device.recommend(["i3", "i4"], payload, k=3)] == [
        token for token, _ in device.recommend(["i3", "i4"], server.post("/v1/generate", {"window": ["i3", "i4"]}).json(), k=3)
    ]
    with pytest.raises(ServiceError, match="answered 401") as refused:
        request_parameters(server.url, ["i3"], token="wrong")
    assert refused.value.status == 401
    with pytest.raises(ServiceError, match="answered 422: .*unknown item token 'nope'"):
        request_parameters(server.url, ["i3", "nope"], token=TOKEN)
    error_body = server.post("/v1/generate", {"window": ["i3"]}, headers={"Authorization": "Bearer wrong"}).json()
    with pytest.raises(BundleError, match="the service's error answer"):
        device.recommend(["i3"], error_body)


def test_a_request_without_the_token_gets_401_and_generates_nothing(server):
    generated = server.metric("duet_generated_devices_total")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = server.post("/v1/generate", {"window": ["i3"]}, headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert "token" in response.json()["error"]
    assert server.client.get("/metrics").status_code == 401
    assert server.metric("duet_generated_devices_total") == generated


def test_generate_answers_the_bundles_payload(server, bundle):
    folder, _ = bundle
    response = server.post("/v1/generate", {"window": ["i3", "i4", "i5"]})
    assert response.status_code == 200
    generator = BundleGenerator(folder)
    expected = generator.generate([generator.vocabulary.ids(["i3", "i4", "i5"], "window")])[0]
    assert response.json() == expected
    assert len(DeviceModel(folder).recommend(["i1", "i3", "i4", "i5"], response.json(), k=5)) == 5
    half = server.post("/v1/generate", {"window": ["i3", "i4", "i5"], "dtype": "float16"}).json()
    assert half["dtype"] == "float16" and len(half["parameters"]) < len(expected["parameters"])


def test_an_over_long_window_keeps_its_newest_items_and_says_so(server):
    long = server.post("/v1/generate", {"window": ["i1", "i2", "i3", "i4", "i5", "i6"]}).json()
    assert long.pop("window_truncated") == {"received": 6, "kept": 4, "note": "kept the newest items"}
    assert long == server.post("/v1/generate", {"window": ["i3", "i4", "i5", "i6"]}).json()


def test_the_batch_endpoint_answers_each_window_as_the_single_one(server):
    windows = [["i3"], ["i7", "i8"], ["i1", "i2", "i3", "i4", "i5"]]
    payloads = server.post("/v1/generate/batch", {"windows": windows}).json()["payloads"]
    for window, payload in zip(windows, payloads):
        assert payload == server.post("/v1/generate", {"window": window}).json()


BAD_REQUESTS = [
    ("/v1/generate", b"not json", 400, "body: not valid JSON"),
    ("/v1/generate", b"\xff\xfe", 400, "body: not valid JSON"),
    ("/v1/generate", [], 422, "body: must be a JSON object"),
    ("/v1/generate", {}, 422, "window: missing"),
    ("/v1/generate", {"window": []}, 422, "window: is empty"),
    ("/v1/generate", {"window": "i3"}, 422, "window: must be an array"),
    ("/v1/generate", {"window": ["i3", 4]}, 422, "window[1]: must be a string item token, got number"),
    ("/v1/generate", {"window": ["nope", 4]}, 422, "window[1]: must be a string item token, got number"),
    ("/v1/generate", {"window": ["i3", ["i4"]]}, 422, "window[1]: must be a string item token, got array"),
    ("/v1/generate", {"window": ["i3", "[PAD]"]}, 422, "window[1]: unknown item token '[PAD]'"),
    ("/v1/generate", {"window": ["i3", "242"]}, 422, "window[1]: unknown item token '242'"),
    ("/v1/generate", {"window": ["i3"], "dtype": "int8"}, 422, "dtype: must be one of"),
    ("/v1/generate", {"window": ["i3"], "extra": 1}, 422, "body: unknown field 'extra'"),
    ("/v1/generate", {"window": ["i3"], "a\nb": 1}, 422, "body: unknown field 'a\\nb'"),
    ("/v1/generate/batch", {"windows": []}, 422, "windows: must be a non-empty array"),
    ("/v1/generate/batch", {"windows": [["i3"], ["nope"]]}, 422, "windows[1][0]: unknown item token 'nope'"),
    ("/v1/generate/batch", {"windows": [[]] * 1025}, 413, "windows: holds 1025 windows, the limit is 1024"),
    ("/v1/generate", {"window": ["i3"] * 2000}, 413, "body: Content-Length"),
]


@pytest.mark.parametrize("path, body, status, message", BAD_REQUESTS)
def test_bad_input_gets_a_4xx_naming_the_field(server, path, body, status, message):
    response = server.post(path, body)
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(message) and "\n" not in response.json()["error"]


def test_a_chunked_body_over_the_limit_gets_413(server):
    chunks = (b"x" * 1024 for _ in range(8))
    response = server.client.post("/v1/generate", content=chunks, headers=AUTH)
    assert response.status_code == 413 and "limit of 4096 bytes" in response.json()["error"]


def test_concurrent_requests_share_generator_calls(server):
    calls = server.metric("duet_generator_batch_devices_count")
    devices = server.metric("duet_generator_batch_devices_sum")
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: server.post("/v1/generate", {"window": [f"i{i % 40 + 1}"]}).status_code, range(64)))
    assert statuses == [200] * 64
    assert server.metric("duet_generator_batch_devices_sum") - devices == 64
    assert server.metric("duet_generator_batch_devices_count") - calls < 64
    assert server.metric('duet_http_requests_total{endpoint="generate",status="200"}') >= 64
    assert server.metric('duet_http_request_duration_seconds_bucket{endpoint="generate",le="+Inf"}') >= 64


def test_a_full_queue_answers_503_with_retry_after(bundle):
    """The queue holds at most --max-queue devices: what does not fit is refused at once, not queued."""
    folder, _ = bundle
    live = LiveServer(folder, "--max-queue", "4")
    try:
        refused = live.post("/v1/generate/batch", {"windows": [["i3"]] * 5})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"].startswith("overloaded: 0 devices are waiting (limit 4)")
        assert live.post("/v1/generate/batch", {"windows": [["i3"]] * 4}).status_code == 200
        with ThreadPoolExecutor(8) as pool:
            statuses = set(pool.map(lambda i: live.post("/v1/generate/batch", {"windows": [["i3"]] * 3}).status_code, range(32)))
        assert statuses <= {200, 503}
        assert live.metric('duet_http_requests_total{endpoint="batch",status="503"}') >= 1
    finally:
        live.stop()


def test_a_worker_takes_what_it_built_at_startup_out_of_the_collectors_sight(bundle):
    """gc.freeze() at startup: a full collection would otherwise scan FastAPI, onnxruntime and numpy's objects
    (about 30 ms, every request in flight waiting) several times a second under load."""
    from recbole_duet.serving.app import create_app

    app = create_app(ServeSettings(bundle=bundle[0]))

    async def start_and_stop():
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    gc.unfreeze()
    try:
        assert asyncio.run(start_and_stop()) > 1000
    finally:
        gc.unfreeze()


def test_serving_a_non_loopback_address_needs_a_token_or_an_explicit_choice(bundle):
    folder, token_file = bundle
    with pytest.raises(ValueError, match="--token-file"):
        check_settings(ServeSettings(bundle=folder), "0.0.0.0", allow_unauthenticated=False)
    check_settings(ServeSettings(bundle=folder), "0.0.0.0", allow_unauthenticated=True)
    check_settings(ServeSettings(bundle=folder, token_file=token_file), "0.0.0.0", allow_unauthenticated=False)
    check_settings(ServeSettings(bundle=folder), "127.0.0.1", allow_unauthenticated=False)


TOKENS = st.sampled_from(["i1", "i3", "i40", "i41", "[PAD]", "", "I3", "i3 ", "ü", "\x00"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | TOKENS,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
BODIES = st.one_of(
    st.fixed_dictionaries({"window": st.lists(TOKENS | JSON, max_size=12)}, optional={"dtype": JSON | st.sampled_from(["float16", "float32"])}),
    st.fixed_dictionaries({"windows": st.lists(st.lists(TOKENS, max_size=6) | JSON, max_size=5)}),
    st.dictionaries(st.sampled_from(["window", "windows", "dtype", "x"]), JSON, max_size=3),
    JSON,
).map(lambda value: json.dumps(value).encode()) | st.binary(max_size=64)


FUZZ_EXAMPLES = 300


def test_fuzzed_bodies_never_get_a_5xx_and_the_server_serves_on(server, bundle):
    """One test fuzzes and then checks the server, so that the check cannot pass without the fuzzing before it."""
    device = DeviceModel(bundle[0])
    errors_before = server.metric('duet_http_requests_total{endpoint="generate",status="500"}')
    statuses = []

    @settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
        derandomize=True,  # the same bodies on every run and machine: a failure here is reproducible
    )
    @given(path=st.sampled_from(["/v1/generate", "/v1/generate/batch"]), body=BODIES)
    def post_fuzzed_body(path, body):
        response = server.post(path, body)
        statuses.append(response.status_code)
        assert response.status_code in (200, 400, 413, 422), (body, response.status_code, response.text)
        answer = response.json()
        if response.status_code != 200:
            assert isinstance(answer["error"], str) and "\n" not in answer["error"]
            return
        for payload in answer["payloads"] if path.endswith("batch") else [answer]:
            device.codec.decode(payload)

    post_fuzzed_body()
    assert len(statuses) >= FUZZ_EXAMPLES and {400, 422} <= set(statuses)  # it fuzzed, and bad bodies were refused
    assert server.client.get("/healthz").json()["status"] == "ok"
    assert server.metric('duet_http_requests_total{endpoint="generate",status="500"}') == errors_before
    assert server.post("/v1/generate", {"window": ["i3"]}).status_code == 200


def worker_pids(server_process):
    """uvicorn's worker processes (spawned children running spawn_main) of ``recbole-duet serve``."""
    children = subprocess.run(["pgrep", "-P", str(server_process.pid)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in children if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]


def test_a_worker_killed_with_sigkill_is_replaced_while_the_other_keeps_answering(bundle):
    """Clients post until the killed worker is replaced and each has had answers after the kill; every response is
    recorded before its body is read, and every client thread's outcome is checked, so a 5xx or a broken payload
    fails the test instead of ending a thread unseen."""
    folder, _ = bundle
    live = LiveServer(folder, "--workers", "2")
    device = DeviceModel(folder)
    killed, replaced, answering = threading.Event(), threading.Event(), set()
    answers_after_kill = 5  # per client, once the worker is replaced
    deadline = time.monotonic() + 60  # a guard against a server that stops answering, not a timing claim

    def client():
        outcomes, answered_after = [], 0
        with httpx.Client(base_url=live.url, timeout=10) as http:
            while answered_after < answers_after_kill or not replaced.is_set():
                assert time.monotonic() < deadline, f"no answers after the kill: {outcomes[-5:]}"
                after_kill = killed.is_set()
                try:
                    response = http.post("/v1/generate", json={"window": ["i3", "i4"]})
                except httpx.TransportError as error:
                    outcomes.append((after_kill, type(error).__name__))
                    continue
                outcomes.append((after_kill, response.status_code))
                if response.status_code == 200:
                    device.codec.decode(response.json())  # a 200 is always a complete payload
                    answering.add(threading.get_ident())
                    answered_after += replaced.is_set()
        return outcomes

    try:
        before = worker_pids(live.process)
        assert len(before) == 2
        with ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(client) for _ in range(4)]
            while len(answering) < len(clients):  # every client has had an answer before the kill
                assert time.monotonic() < deadline and not any(c.done() for c in clients), "clients got no answer"
                time.sleep(0.05)
            os.kill(before[0], signal.SIGKILL)
            killed.set()
            while not (len(worker_pids(live.process)) == 2 and before[0] not in worker_pids(live.process)):
                assert time.monotonic() < deadline, "the killed worker was not replaced"
                time.sleep(0.2)
            replaced.set()
            outcomes = [outcome for future in clients for outcome in future.result()]  # re-raises a client's error
        assert all(status in (200, "RemoteProtocolError", "ReadError", "ConnectError") for _, status in outcomes)
        assert sum(1 for after_kill, status in outcomes if after_kill and status == 200) >= 4 * answers_after_kill
        assert live.client.get("/healthz").status_code == 200
    finally:
        live.stop()
