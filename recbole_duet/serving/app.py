"""The ASGI service (FastAPI): ``POST /v1/generate``, ``POST /v1/generate/batch``, ``GET /healthz``,
``GET /metrics``.

Handlers read the raw body themselves (size-limited, then JSON, then :mod:`recbole_duet.serving.requests`)
rather than through FastAPI's pydantic models, so that every refusal is a 4xx whose one-line message names
the field, in one format: ``{"error": "window[2]: unknown item token 'x'"}``. A bearer token, when
configured, is checked before the body is read: a request without it generates nothing.
"""

import gc
import hmac
import json
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Optional

from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from recbole_duet.serving import metrics
from recbole_duet.serving.batcher import MicroBatcher, QueueFullError
from recbole_duet.serving.bundle_generator import BundleGenerator
from recbole_duet.serving.requests import RequestError, parse_batch, parse_generate, parse_json

SETTINGS_ENV = "RECBOLE_DUET_SERVE_SETTINGS"
RETRY_AFTER_S = 1


@dataclass
class ServeSettings:
    """What a worker needs to build the app; travels to uvicorn's worker processes as JSON in the environment
    (the token itself stays in its file)."""

    bundle: str
    token_file: Optional[str] = None
    max_batch: int = 256
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    max_body_bytes: int = 1 << 20
    max_devices_per_request: int = 1024
    threads: int = 1

    def to_environment(self):
        os.environ[SETTINGS_ENV] = json.dumps(asdict(self))


def read_token(path):
    """The bearer token in ``path`` (surrounding whitespace removed); ValueError naming the file if unusable."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as error:
        raise ValueError(f"--token-file '{path}' cannot be read: {error.strerror}") from None
    if not token:
        raise ValueError(f"--token-file '{path}' is empty")
    return token


def _compact(value):
    return json.dumps(value, separators=(",", ":")).encode()


def _json(status, value, headers=None):
    body = value if isinstance(value, bytes) else _compact(value)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _with_notice(payload, window):
    """A payload's JSON text (from the batcher), with ``window_truncated`` added when the window was cut."""
    notice = window.notice
    return payload if notice is None else payload[:-1] + b',"window_truncated":' + _compact(notice) + b"}"


def create_app(settings):
    """The FastAPI app for one worker process."""
    generator = BundleGenerator(settings.bundle, threads=settings.threads)
    manifest = generator.manifest
    token = read_token(settings.token_file).encode() if settings.token_file else None
    batcher = MicroBatcher(
        generator,
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        on_batch=metrics.BATCH_DEVICES.observe,
    )

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        # Everything built so far (FastAPI, onnxruntime, numpy, the vocabulary) lives as long as the worker; out
        # of the collector's sight, a full collection no longer stalls every request in flight (about 30 ms
        # here: the p99 of a loaded worker), and it only scans what requests allocate.
        gc.freeze()
        yield
        await batcher.stop()

    app = FastAPI(title="recbole-duet parameter generation", version=manifest["model_version"], lifespan=lifespan)

    def authorise(request):
        if token is None:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token):
            raise RequestError(401, "authorization: missing or wrong bearer token")

    async def read_body(request):
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise RequestError(413, f"body: Content-Length {declared[:20]!r} exceeds the limit of {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"body: exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def answer(endpoint, request, parse, respond):
        start = time.perf_counter()
        try:
            authorise(request)
            with batcher.expect():
                windows, dtype = parse(parse_json(await read_body(request)))
            metrics.QUEUED.set(batcher.queued + len(windows))
            payloads = await batcher.submit([window.ids for window in windows], dtype)
            metrics.DEVICES.inc(len(windows))
            response = _json(200, respond([_with_notice(p, w) for p, w in zip(payloads, windows)]))
        except RequestError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
            response = _json(error.status, {"error": error.message}, headers)
        except QueueFullError as error:
            message = f"overloaded: {error}; retry after {RETRY_AFTER_S} s"
            response = _json(503, {"error": message}, {"Retry-After": str(RETRY_AFTER_S)})
        except ClientDisconnect:
            response = _json(400, {"error": "body: the client disconnected while sending it"})
        metrics.QUEUED.set(batcher.queued)
        metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
        metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - start)
        return response

    window_size = generator.window_size
    vocabulary = generator.vocabulary

    @app.post("/v1/generate")
    async def generate(request: Request):
        """One device: ``{"window": ["242", "302", ...], "dtype": "float32"}`` -> its payload."""
        return await answer(
            "generate", request, lambda body: parse_generate(body, vocabulary, window_size), lambda p: p[0]
        )

    @app.post("/v1/generate/batch")
    async def generate_batch(request: Request):
        """Many devices: ``{"windows": [[...], ...]}`` -> ``{"payloads": [...]}`` in the same order."""
        limit = settings.max_devices_per_request
        return await answer(
            "batch",
            request,
            lambda body: parse_batch(body, vocabulary, window_size, limit),
            lambda p: b'{"payloads":[' + b",".join(p) + b"]}",
        )

    @app.get("/healthz")
    async def healthz():
        """Liveness and what is served (no token needed: load balancers probe it; it generates nothing)."""
        return _json(200, {"status": "ok", "model_version": manifest["model_version"], "queued": batcher.queued})

    @app.get("/metrics")
    async def prometheus_metrics(request: Request):
        try:
            authorise(request)
        except RequestError as error:
            return _json(401, {"error": error.message}, {"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def app_from_environment():
    """uvicorn's factory in every worker process: the app for the settings :func:`serve` put in the environment."""
    return create_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))
