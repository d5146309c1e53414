"""``recbole-duet serve``: check the settings, then run the app under uvicorn with one or more workers.

Workers are separate processes sharing the listening socket; uvicorn's supervisor restarts one that dies
(SIGKILL included) while the others keep answering. Each worker is stateless apart from its micro-batching
queue, so N replicas behind any load balancer scale the same way (README).
"""

import ipaddress
import os
import tempfile

import uvicorn

from recbole_duet.bundle import read_manifest
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


def serve(settings, host="127.0.0.1", port=8000, workers=1, allow_unauthenticated=False, log_level="warning"):
    """Run the service until interrupted."""
    check_settings(settings, host, allow_unauthenticated)
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
        access_log=False,
    )
