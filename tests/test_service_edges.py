"""The service's edges, run in this process: Prometheus samples by label (counted as deltas, since the registry
lives as long as the process), the body limit for a body streamed in chunks without Content-Length, a client that
disconnects while sending, the batcher and onnxruntime settings the app is built with, the OpenAPI metadata, and
the multiprocess ``/metrics``. Each test builds its own app (see tests/test_service_in_process.py for why).

Requests the TestClient cannot send (a body in several chunks, a bogus Content-Length, a disconnect) go to the
app as raw ASGI messages, on the event loop of the TestClient's lifespan, where the micro-batcher runs."""

import json
import locale
import types
import warnings

import pytest
from bundles import exported_bundle
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key

import recbole_duet.serving.app as app_module
from recbole_duet.device.bundle import ItemVocabulary
from recbole_duet.serving import metrics
from recbole_duet.serving.app import ServeSettings, create_app, read_token
from recbole_duet.serving.bundle_generator import BundleGenerator
from recbole_duet.serving.requests import RequestError, parse_generate

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 2000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder, manifest, *_ = exported_bundle(str(tmp_path_factory.mktemp("GRU4Rec")), "GRU4Rec", verify_users=0)
    return folder, manifest


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
def served(bundle, token_file):
    """``(TestClient, app)``: an app per test with a token and a body limit of 2000 bytes."""
    app = create_app(ServeSettings(bundle=bundle[0], token_file=token_file, max_body_bytes=LIMIT))
    with TestClient(app) as client:
        yield client, app


def padded(body, size):
    """``body`` (JSON bytes) followed by spaces up to exactly ``size`` bytes: still the same JSON value."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


def asgi_post(client, app, path, chunks, headers=(), disconnect=False):
    """POST ``chunks`` to ``app`` as separate ``http.request`` messages (no Content-Length unless ``headers`` has
    one); with ``disconnect`` the client goes away after them. Returns ``(status, headers, body)``."""
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    messages.append({"type": "http.disconnect"} if disconnect else {"type": "http.request", "body": b"", "more_body": False})
    sent = []

    async def call():
        incoming = iter(messages)

        async def receive():
            return next(incoming, {"type": "http.disconnect"})

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {TOKEN}".encode())]
            + [(name.encode(), value.encode()) for name, value in headers],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)

    client.portal.call(call)
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(m["body"] for m in bodies)


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def samples(names_and_labels):
    return {key: sample(key[0], **dict(key[1:])) for key in names_and_labels}


# --- Prometheus samples, by label -------------------------------------------------------------------------------


class FakePerfCounter:
    """``time.perf_counter`` for the app: a quarter of a second passes between any two readings."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        self.now += 0.25
        return self.now


def test_each_answer_is_counted_by_endpoint_and_status_and_timed_by_endpoint(served, monkeypatch):
    client, _ = served
    monkeypatch.setattr(app_module, "time", types.SimpleNamespace(perf_counter=FakePerfCounter().perf_counter))
    keys = [
        ("duet_http_requests_total", ("endpoint", "generate"), ("status", "200")),
        ("duet_http_requests_total", ("endpoint", "generate"), ("status", "401")),
        ("duet_http_requests_total", ("endpoint", "batch"), ("status", "200")),
        ("duet_http_requests_total", ("endpoint", "batch"), ("status", "422")),
        ("duet_http_request_duration_seconds_count", ("endpoint", "generate")),
        ("duet_http_request_duration_seconds_sum", ("endpoint", "generate")),
        ("duet_http_request_duration_seconds_bucket", ("endpoint", "generate"), ("le", "0.2")),
        ("duet_http_request_duration_seconds_bucket", ("endpoint", "generate"), ("le", "0.5")),
        ("duet_http_request_duration_seconds_count", ("endpoint", "batch")),
        ("duet_http_request_duration_seconds_sum", ("endpoint", "batch")),
        ("duet_generated_devices_total",),
        ("duet_generator_batch_devices_count",),
        ("duet_generator_batch_devices_sum",),
        ("duet_generator_batch_devices_bucket", ("le", "2.0")),
    ]
    before = samples(keys)
    assert client.post("/v1/generate", json={"window": ["i1", "i2"]}, headers=AUTH).status_code == 200
    assert client.post("/v1/generate", json={"window": ["i1"]}).status_code == 401
    assert client.post("/v1/generate/batch", json={"windows": [["i1"], ["i2", "i3"]]}, headers=AUTH).status_code == 200
    assert client.post("/v1/generate/batch", json={"windows": [["nope"]]}, headers=AUTH).status_code == 422
    after = samples(keys)
    assert {key: after[key] - before[key] for key in keys} == {
        ("duet_http_requests_total", ("endpoint", "generate"), ("status", "200")): 1,
        ("duet_http_requests_total", ("endpoint", "generate"), ("status", "401")): 1,
        ("duet_http_requests_total", ("endpoint", "batch"), ("status", "200")): 1,
        ("duet_http_requests_total", ("endpoint", "batch"), ("status", "422")): 1,
        ("duet_http_request_duration_seconds_count", ("endpoint", "generate")): 2,
        ("duet_http_request_duration_seconds_sum", ("endpoint", "generate")): 0.5,  # 0.25 s each, by the fake clock
        ("duet_http_request_duration_seconds_bucket", ("endpoint", "generate"), ("le", "0.2")): 0,
        ("duet_http_request_duration_seconds_bucket", ("endpoint", "generate"), ("le", "0.5")): 2,
        ("duet_http_request_duration_seconds_count", ("endpoint", "batch")): 2,
        ("duet_http_request_duration_seconds_sum", ("endpoint", "batch")): 0.5,
        ("duet_generated_devices_total",): 3,
        ("duet_generator_batch_devices_count",): 2,  # one generator call per request here (they come one by one)
        ("duet_generator_batch_devices_sum",): 3,
        ("duet_generator_batch_devices_bucket", ("le", "2.0")): 2,
    }
    text = client.get("/metrics", headers=AUTH).text
    line = 'duet_http_requests_total{endpoint="batch",status="422"} '
    assert [float(row[len(line):]) for row in text.splitlines() if row.startswith(line)] == [after[keys[3]]]


class RecordingGauge:
    def __init__(self):
        self.values = []

    def set(self, value):
        self.values.append(value)


def test_the_queue_gauge_counts_a_request_s_devices_while_it_waits_and_none_after(served, monkeypatch):
    client, _ = served
    gauge = RecordingGauge()
    monkeypatch.setattr(metrics, "QUEUED", gauge)
    client.post("/v1/generate/batch", json={"windows": [["i1"], ["i2"], ["i3"]]}, headers=AUTH)
    assert gauge.values == [3, 0]
    client.post("/v1/generate", json={"window": ["nope"]}, headers=AUTH)  # refused before it queues
    assert gauge.values == [3, 0, 0]


# --- the body limit, streamed bodies, disconnects -------------------------------------------------------------------


def test_a_body_of_exactly_the_limit_is_read_whether_its_length_is_declared_or_not(served):
    client, app = served
    body = padded(b'{"window": ["i1", "i2"]}', LIMIT)
    declared = client.post("/v1/generate", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert declared.status_code == 200 and declared.json()["model_version"]
    status, _, streamed = asgi_post(client, app, "/v1/generate", [body[:1000], body[1000:]])
    assert status == 200 and streamed == declared.content


@pytest.mark.parametrize("chunks", [[b" " * 2001], [b" " * 1200, b" " * 800, b" "], [b" " * 1000] * 3])
def test_a_body_streamed_past_the_limit_without_a_length_is_refused_with_413(served, chunks):
    client, app = served
    before = sample("duet_http_requests_total", endpoint="generate", status="413")
    status, headers, body = asgi_post(client, app, "/v1/generate", chunks)
    assert (status, body) == (413, b'{"error":"body: exceeds the limit of 2000 bytes"}')
    assert headers["content-type"] == "application/json" and "www-authenticate" not in headers
    assert sample("duet_http_requests_total", endpoint="generate", status="413") - before == 1


@pytest.mark.parametrize(
    "declared, message",
    [
        ("9" * 30, "body: Content-Length '99999999999999999999' exceeds the limit of 2000 bytes"),
        ("2001", "body: Content-Length '2001' exceeds the limit of 2000 bytes"),
        ("12 ", "body: Content-Length '12 ' exceeds the limit of 2000 bytes"),
        ("x" * 25, f"body: Content-Length {'x' * 20!r} exceeds the limit of 2000 bytes"),
    ],
)
def test_a_declared_length_over_the_limit_or_not_a_number_is_refused_and_cut_to_20_characters(served, declared, message):
    client, app = served
    status, _, body = asgi_post(client, app, "/v1/generate", [b'{"window": ["i1"]}'], headers=[("content-length", declared)])
    assert (status, json.loads(body)) == (413, {"error": message})


def test_a_client_that_disconnects_while_sending_gets_400_and_the_service_serves_on(served):
    client, app = served
    before = sample("duet_http_requests_total", endpoint="batch", status="400")
    status, headers, body = asgi_post(client, app, "/v1/generate/batch", [b'{"windows": [["i1"'], disconnect=True)
    assert (status, body) == (400, b'{"error":"body: the client disconnected while sending it"}')
    assert headers["content-type"] == "application/json"
    assert sample("duet_http_requests_total", endpoint="batch", status="400") - before == 1
    assert client.get("/healthz").json()["queued"] == 0
    assert client.post("/v1/generate/batch", json={"windows": [["i1"]]}, headers=AUTH).status_code == 200


def test_refusals_are_compact_json_and_only_a_401_asks_for_a_bearer_token(served):
    client, _ = served
    unprocessable = client.post("/v1/generate", json={"window": []}, headers=AUTH)
    assert unprocessable.content == b'{"error":"window: is empty; send at least one item token"}'
    assert unprocessable.status_code == 422 and "www-authenticate" not in unprocessable.headers
    unauthorised = client.post("/v1/generate", json={"window": ["i1"]})
    assert unauthorised.content == b'{"error":"authorization: missing or wrong bearer token"}'
    assert unauthorised.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("value, status", [(f"Bearer  {TOKEN}", 200), (f"bearer {TOKEN} ", 200), (f"Bearer {TOKEN} x", 401)])
def test_the_bearer_scheme_is_the_first_word_and_the_token_the_rest_stripped(served, value, status):
    client, _ = served
    assert client.post("/v1/generate", json={"window": ["i1"]}, headers={"Authorization": value}).status_code == status


# --- what the app is built with ----------------------------------------------------------------------------------


def test_the_app_builds_its_batcher_and_onnxruntime_session_from_the_settings(bundle, monkeypatch):
    built = {}

    class Recorded:
        def __init__(self, cls, key):
            self.cls, self.key = cls, key

        def __call__(self, *args, **kwargs):
            built[self.key] = self.cls(*args, **kwargs)
            return built[self.key]

    monkeypatch.setattr(app_module, "MicroBatcher", Recorded(app_module.MicroBatcher, "batcher"))
    monkeypatch.setattr(app_module, "BundleGenerator", Recorded(BundleGenerator, "generator"))
    settings = ServeSettings(bundle=bundle[0], max_batch=7, max_wait_ms=3.5, max_queue=9, threads=2)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/generate", json={"window": ["i1"]}).status_code == 200
    batcher, generator = built["batcher"], built["generator"]
    assert (batcher.max_batch, batcher.max_wait, batcher.max_queue) == (7, 0.0035, 9)
    assert batcher.generator is generator and batcher.on_batch == metrics.BATCH_DEVICES.observe
    options = generator.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_the_openapi_document_names_the_service_and_the_model_version(bundle):
    with TestClient(create_app(ServeSettings(bundle=bundle[0]))) as client:
        info = client.get("/openapi.json").json()["info"]
    assert info == {"title": "recbole-duet parameter generation", "version": bundle[1]["model_version"]}


def test_the_generator_runs_on_the_cpu_with_one_thread_of_each_kind_by_default_and_no_warning(bundle):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # onnxruntime only warns about a provider it does not know
        generator = BundleGenerator(bundle[0])
    options = generator.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert generator.session.get_providers() == ["CPUExecutionProvider"]


def test_the_token_file_is_read_as_utf_8_whatever_the_locale(tmp_path):
    (tmp_path / "token").write_bytes(" t\u00f6ken\u2603 \n".encode("utf-8"))
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale: the default encoding of open() cannot read it
    try:
        assert read_token(str(tmp_path / "token")) == "t\u00f6ken\u2603"
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)


# --- requests: long values cut in messages -------------------------------------------------------------------------


def test_a_long_unknown_field_or_dtype_is_cut_in_the_message():
    with pytest.raises(RequestError) as error:
        parse_generate({"window": ["a"], "f" * 100: 1}, ItemVocabulary(["[PAD]", "a"]), 4)
    assert (error.value.status, str(error.value)) == (422, f"body: unknown field {'f' * 80!r} (allowed: 'window', ['dtype'])")
    with pytest.raises(RequestError) as error:
        parse_generate({"window": ["a"], "dtype": "d" * 100}, ItemVocabulary(["[PAD]", "a"]), 4)
    assert str(error.value) == "dtype: must be one of ['float32', 'float16'], got \"" + "d" * 79
    assert error.value.message == str(error.value)


# --- /metrics with several workers ---------------------------------------------------------------------------------


def test_with_a_multiprocess_folder_metrics_are_the_sum_over_the_workers_files(tmp_path, monkeypatch):
    key = mmap_key("duet_generated_devices", "duet_generated_devices_total", [], [], "Devices whose parameters were generated.")
    for pid, value in [(101, 3.0), (102, 4.0)]:
        worker = MmapedDict(str(tmp_path / f"counter_{pid}.db"))
        worker.write_value(key, value, 0.0)
        worker.close()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    body, content_type = metrics.render()
    assert content_type == CONTENT_TYPE_LATEST
    assert body.decode().splitlines() == [
        "# HELP duet_generated_devices_total Devices whose parameters were generated.",
        "# TYPE duet_generated_devices_total counter",
        "duet_generated_devices_total 7.0",
    ]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert b"duet_http_requests_total" in metrics.render()[0]  # this process's own registry again
