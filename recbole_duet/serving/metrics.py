"""Prometheus metrics of the service (text format at ``GET /metrics``).

With several uvicorn workers each process counts on its own; :func:`recbole_duet.serving.server.serve` then
points prometheus_client's multiprocess mode at a shared folder (``PROMETHEUS_MULTIPROC_DIR``, read when
this module is imported) and ``/metrics`` reports the sum over all workers, dead ones included.
"""

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

REQUESTS = Counter("duet_http_requests", "HTTP requests answered, by endpoint and status.", ["endpoint", "status"])
LATENCY = Histogram(
    "duet_http_request_duration_seconds",
    "Time from reading a request to answering it, by endpoint.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
BATCH_DEVICES = Histogram(
    "duet_generator_batch_devices",
    "Devices in each generator call (micro-batching).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
DEVICES = Counter("duet_generated_devices", "Devices whose parameters were generated.")
QUEUED = Gauge("duet_queued_devices", "Devices waiting for the generator.", multiprocess_mode="livesum")


def render():
    """``(body, content type)`` of the current metrics, summed over workers in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
