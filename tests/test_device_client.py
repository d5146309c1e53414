"""The device's HTTP client (``request_parameters``) against a recording stand-in server, and the service's
start-up checks, in this process: what is sent (method, path, headers, body), how each kind of error answer
becomes a ``ServiceError``, the timeout; which hosts count as loopback and what the refusal says."""

import http.server
import json
import threading
import time

import pytest

from recbole_duet.device import ServiceError, request_parameters
from recbole_duet.device.bundle import UnknownItemError
from recbole_duet.serving.app import ServeSettings
from recbole_duet.serving.server import check_settings, is_loopback, startup_line


class StandIn(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's ``reply`` (status, body bytes) after ``delay_s``; keeps what came."""

    def do_POST(self):
        server = self.server
        server.seen.append(
            {
                "requestline": self.requestline,  # as sent: http.server reduces a leading "//" of self.path to "/"
                "path": self.path,
                "headers": dict(self.headers),
                "body": self.rfile.read(int(self.headers["Content-Length"])),
            }
        )
        time.sleep(server.delay_s)
        status, body = server.reply
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.seen, server.delay_s, server.reply = [], 0.0, (200, b'{"model_version": "v", "parameters": ""}')
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server, suffix=""):
    return f"http://127.0.0.1:{server.server_address[1]}{suffix}"


def test_the_request_is_a_json_post_of_the_window(stand_in):
    assert request_parameters(url(stand_in, "/"), ["i1", "i2"], dtype="float16") == {"model_version": "v", "parameters": ""}
    (seen,) = stand_in.seen
    assert seen["path"] == "/v1/generate"  # the trailing slash of the url is not doubled
    assert seen["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in seen["headers"]  # no token, no header
    assert json.loads(seen["body"]) == {"window": ["i1", "i2"], "dtype": "float16"}
    request_parameters(url(stand_in), ("i3",), token="t0k")
    assert stand_in.seen[1]["headers"]["Authorization"] == "Bearer t0k" and stand_in.seen[1]["path"] == "/v1/generate"


@pytest.mark.parametrize(
    "status, body, message",
    [
        (401, b'{"error": "authorization: missing or wrong bearer token"}', "the service answered 401: authorization: missing or wrong bearer token"),
        (422, b'{"error": "window[1]: unknown item token \'x\'"}', "the service answered 422: window[1]: unknown item token 'x'"),
        (503, b"overloaded, retry\n", "the service answered 503: overloaded, retry"),
        (502, b'{"detail": "no error field"}', 'the service answered 502: {"detail": "no error field"}'),
        (500, b"", "the service answered 500: Internal Server Error"),
        (400, b"\xff\xfe bad bytes", "the service answered 400: \ufffd\ufffd bad bytes"),
    ],
)
def test_an_error_answer_becomes_a_service_error_with_its_status_and_line(stand_in, status, body, message):
    stand_in.reply = (status, body)
    with pytest.raises(ServiceError) as error:
        request_parameters(url(stand_in), ["i1"])
    assert str(error.value) == message and error.value.status == status


def test_a_service_slower_than_the_timeout_is_given_up_on(stand_in):
    stand_in.delay_s = 1.0
    with pytest.raises(OSError):  # TimeoutError, or URLError wrapping it
        request_parameters(url(stand_in), ["i1"], timeout_s=0.1)


@pytest.mark.parametrize(
    "host, loopback",
    [("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("0.0.0.0", False),
     ("192.168.1.5", False), ("LOCALHOST", False), ("example.com", False)],
)
def test_which_hosts_count_as_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback


def test_an_open_host_without_a_token_is_refused_naming_both_ways_out(tmp_path):
    from bundles import exported_bundle

    folder, manifest, *_ = exported_bundle(str(tmp_path), "GRU4Rec", verify_users=0)
    settings = ServeSettings(bundle=folder)
    check_settings(settings, "127.0.0.1", allow_unauthenticated=False)  # loopback: no token needed
    check_settings(settings, "0.0.0.0", allow_unauthenticated=True)
    with pytest.raises(ValueError) as error:
        check_settings(settings, "0.0.0.0", allow_unauthenticated=False)
    assert str(error.value) == (
        "--host 0.0.0.0 is reachable from other machines and no --token-file is given: anyone could use the "
        "service. Give a --token-file, or pass --allow-unauthenticated to serve without one."
    )
    token_file = tmp_path / "token"
    token_file.write_text("t\n")
    check_settings(ServeSettings(bundle=folder, token_file=str(token_file)), "0.0.0.0", allow_unauthenticated=False)
    assert startup_line(ServeSettings(bundle=folder, token_file=str(token_file)), "0.0.0.0", 8000, 2) == (
        f"recbole-duet serve: bundle {folder} (GRU4Rec, model_version {manifest['model_version']}) on "
        "http://0.0.0.0:8000, 2 workers, a bearer token required"
    )
    assert startup_line(settings, "127.0.0.1", 9, 1).endswith("on http://127.0.0.1:9, 1 worker, no token")


def test_an_unknown_item_is_named_and_a_long_token_cut_to_80_characters():
    short = UnknownItemError("window[2]", "x" * 80)
    assert str(short) == f"window[2]: unknown item token {'x' * 80!r}" and short.field == "window[2]"
    long = UnknownItemError("window[0]", "y" * 81)
    assert str(long) == f"window[0]: unknown item token {'y' * 77 + '...'!r}"


@pytest.mark.parametrize("suffix", ["", "/", "/duetX/"])
def test_the_request_line_is_the_urls_path_plus_v1_generate_with_one_slash(stand_in, suffix):
    """The url's trailing slash (only that) is dropped before ``/v1/generate``: a service behind a path prefix keeps it."""
    request_parameters(url(stand_in, suffix), ["i1"])
    prefix = suffix.rstrip("/")
    assert stand_in.seen[0]["requestline"] == f"POST {prefix}/v1/generate HTTP/1.1"


def test_the_request_gives_up_after_10_seconds_by_default(monkeypatch):
    """The default timeout, read off the call instead of waited for."""
    import io
    import urllib.request

    calls = []

    def urlopen(request, timeout):
        calls.append((request.get_method(), request.full_url, timeout))
        return io.BytesIO(b'{"parameters": ""}')

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert request_parameters("http://device.test", ["i1"]) == {"parameters": ""}
    assert calls == [("POST", "http://device.test/v1/generate", 10)]
