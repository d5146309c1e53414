"""The service's app and request parsing, run in this process (FastAPI's TestClient, no server): each refusal's
status and one-line message naming the field, the truncation notice, the token, the body limit. The live-server
tests (tests/test_serving.py) check the same service over HTTP with worker processes, fuzzing and SIGKILL; these
run the code in-process, where a planted fault in it shows."""


import pytest
from bundles import exported_bundle
from fastapi.testclient import TestClient

from recbole_duet.device import DeviceModel
from recbole_duet.device.bundle import ItemVocabulary
from recbole_duet.serving.app import ServeSettings, create_app, read_token
from recbole_duet.serving.requests import RequestError, Window, parse_batch, parse_generate, parse_json

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder, manifest, *_ = exported_bundle(str(tmp_path_factory.mktemp("GRU4Rec")), "GRU4Rec", verify_users=0)
    return folder, manifest


@pytest.fixture
def client(bundle, tmp_path_factory):
    # An app per test, not per module: mutation testing maps each test to the functions it calls, and an app built
    # once would tie create_app's request handlers to the first test alone.
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(f"  {TOKEN}\n")
    settings = ServeSettings(bundle=bundle[0], token_file=str(token_file), max_body_bytes=2000, max_devices_per_request=3)
    with TestClient(create_app(settings)) as client:
        yield client


def refusal(response):
    return response.status_code, response.json()["error"]


def test_a_window_gets_the_payload_the_bundle_decodes(client, bundle):
    folder, manifest = bundle
    response = client.post("/v1/generate", json={"window": ["i3", "i4"]}, headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["model_version"] == manifest["model_version"] and "window_truncated" not in payload
    decoded = DeviceModel(folder).codec.decode(payload)
    assert set(decoded) == {entry["name"] for entry in manifest["payload"]}
    batch = client.post("/v1/generate/batch", json={"windows": [["i3", "i4"], ["i5"]]}, headers=AUTH).json()
    assert batch["payloads"][0] == payload and len(batch["payloads"]) == 2  # one generator, batched or not
    half = client.post("/v1/generate", json={"window": ["i3", "i4"], "dtype": "float16"}, headers=AUTH).json()
    assert half["dtype"] == "float16" and len(half["parameters"]) < len(payload["parameters"])


def test_a_window_longer_than_the_models_keeps_its_newest_items_and_says_so(client, bundle):
    window_size = bundle[1]["window_size"]
    items = [f"i{n}" for n in range(1, window_size + 4)]
    long = client.post("/v1/generate", json={"window": items}, headers=AUTH).json()
    newest = client.post("/v1/generate", json={"window": items[3:]}, headers=AUTH).json()
    assert long["window_truncated"] == {"received": window_size + 3, "kept": window_size, "note": "kept the newest items"}
    assert long["parameters"] == newest["parameters"] and "window_truncated" not in newest


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/v1/generate", b"{not json", 400, "body: not valid JSON"),
        ("/v1/generate", b"\xff\xfe", 400, "body: not valid JSON"),
        ("/v1/generate", b"[1, 2]", 422, "body: must be a JSON object with field 'window', got array"),
        ("/v1/generate", b'{"window": ["i1"], "x": 1}', 422, "body: unknown field 'x' (allowed: 'window', ['dtype'])"),
        ("/v1/generate", b'{"dtype": "float32"}', 422, "window: missing"),
        ("/v1/generate", b'{"window": "i1"}', 422, "window: must be an array of item tokens (strings), got string"),
        ("/v1/generate", b'{"window": []}', 422, "window: is empty; send at least one item token"),
        ("/v1/generate", b'{"window": ["i1", 7]}', 422, "window[1]: must be a string item token, got number"),
        ("/v1/generate", b'{"window": ["i1", null]}', 422, "window[1]: must be a string item token, got null"),
        ("/v1/generate", b'{"window": ["i1", "nope"]}', 422, "window[1]: unknown item token 'nope'"),
        ("/v1/generate", b'{"window": ["i1"], "dtype": "int8"}', 422, "dtype: must be one of ['float32', 'float16'], got \"int8\""),
        ("/v1/generate/batch", b'{"windows": []}', 422, "windows: must be a non-empty array of windows, got array"),
        ("/v1/generate/batch", b'{"windows": {"a": 1}}', 422, "windows: must be a non-empty array of windows, got object"),
        ("/v1/generate/batch", b'{"windows": [["i1"], ["i2", true]]}', 422, "windows[1][1]: must be a string item token, got boolean"),
        ("/v1/generate/batch", b'{"windows": [["i1"], ["i1"], ["i1"], ["i1"]]}', 413, "windows: holds 4 windows, the limit is 3 a request"),
        ("/v1/generate", b'{"window": ["' + b"i1" * 1000 + b'"]}', 413, "body: Content-Length '2016' exceeds the limit of 2000 bytes"),
    ],
)
def test_each_bad_request_gets_its_status_and_a_line_naming_the_field(client, path, body, status, message):
    response = client.post(path, content=body, headers={**AUTH, "Content-Type": "application/json"})
    got_status, got_message = refusal(response)
    assert got_status == status and got_message.startswith(message), got_message
    assert "\n" not in got_message
    assert client.get("/healthz").status_code == 200  # and the service serves on


def test_an_unknown_token_deep_in_a_long_window_is_named_at_its_place_in_the_request(client, bundle):
    window_size = bundle[1]["window_size"]
    items = ["i1"] * (window_size + 2) + ["nope"]
    assert refusal(client.post("/v1/generate", json={"window": items}, headers=AUTH)) == (
        422, f"window[{window_size + 2}]: unknown item token 'nope'",
    )


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_without_the_token_nothing_is_generated(client, headers):
    response = client.post("/v1/generate", json={"window": ["i1"]}, headers=headers)
    assert refusal(response) == (401, "authorization: missing or wrong bearer token")
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics", headers=headers).status_code == 401


def test_health_and_metrics(client, bundle):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "model_version": bundle[1]["model_version"], "queued": 0}
    client.post("/v1/generate", json={"window": ["i1"]}, headers=AUTH)
    metrics = client.get("/metrics", headers=AUTH)
    assert metrics.status_code == 200 and 'duet_http_requests_total{endpoint="generate",status="200"}' in metrics.text


def test_the_token_file_is_read_stripped_and_refused_when_unusable(tmp_path):
    (tmp_path / "t").write_text(" abc \n")
    assert read_token(str(tmp_path / "t")) == "abc"
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ValueError, match="--token-file '.*empty' is empty"):
        read_token(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="--token-file '.*missing' cannot be read: No such file"):
        read_token(str(tmp_path / "missing"))


def test_the_parsers_keep_the_newest_items_and_count_what_was_sent():
    vocabulary = ItemVocabulary(["[PAD]", "a", "b", "c"])
    (window,), dtype = parse_generate({"window": ["a", "b", "c"]}, vocabulary, window_size=2)
    assert window.ids == [2, 3] and window.received == 3 and dtype == "float32"
    assert window.notice == {"received": 3, "kept": 2, "note": "kept the newest items"}
    assert Window([1], 1).notice is None
    windows, dtype = parse_batch({"windows": [["a"], ["c", "b"]], "dtype": "float16"}, vocabulary, 5, max_devices=2)
    assert [w.ids for w in windows] == [[1], [3, 2]] and dtype == "float16"
    assert parse_json(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(RequestError) as error:
        parse_batch({"windows": [["a"], ["b"], ["c"]]}, vocabulary, 5, max_devices=2)
    assert error.value.status == 413



def test_more_devices_than_the_queue_holds_get_503_with_retry_after(bundle):
    with TestClient(create_app(ServeSettings(bundle=bundle[0], max_queue=1))) as client:
        response = client.post("/v1/generate/batch", json={"windows": [["i1"], ["i2"]]})
        assert refusal(response) == (503, "overloaded: 0 devices are waiting (limit 1); retry after 1 s")
        assert response.headers["retry-after"] == "1"
        assert client.post("/v1/generate", json={"window": ["i1"]}).status_code == 200  # no token configured
