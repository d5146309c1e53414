"""``recbole-duet serve``: check the settings, then run the app under uvicorn with one or more workers.

Workers are separate processes sharing the listening socket; uvicorn's supervisor restarts one that dies
(SIGKILL included) while the others keep answering. Each worker is stateless apart from its micro-batching
queue, so N replicas behind any load balancer scale the same way (docs/deployment.md).
"""

import ipaddress
import os
import sys
import tempfile

import uvicorn

from recbole_duet.device.bundle import read_manifest
from recbole_duet.serving.app import read_token


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from outside


def check_settings(settings, host, allow_unauthenticated):
    """Fail early, with the option at fault named, on what would otherwise fail in every worker."""
    read_manifest(settings.bundle)
    if settings.token_file:
        read_token(settings.token_file)
    elif not is_loopback(host) and not allow_unauthenticated:
        raise ValueError(
            f"--host {host} is reachable from other machines and no --token-file is given: anyone could use "
            "the service. Give a --token-file, or pass --allow-unauthenticated to serve without one."
        )


def startup_line(settings, host, port, workers):
    """What the service says first: where it listens, with which bundle and model version, and how it is guarded."""
    manifest = read_manifest(settings.bundle)
    guard = "a bearer token required" if settings.token_file else "no token"
    return (
        f"recbole-duet serve: bundle {settings.bundle} ({manifest['backbone']}, model_version "
        f"{manifest['model_version']}) on http://{host}:{port}, {workers} worker{'s' if workers > 1 else ''}, {guard}"
    )


def serve(settings, host="127.0.0.1", port=8000, workers=1, allow_unauthenticated=False, log_level="info", access_log=True):
    """Run the service until interrupted; uvicorn logs at ``log_level`` and, with ``access_log``, every request."""
    check_settings(settings, host, allow_unauthenticated)
    print(startup_line(settings, host, port, workers), file=sys.stderr, flush=True)
    settings.to_environment()
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recbole-duet-metrics-")
    uvicorn.run(
        "recbole_duet.serving.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
    )
