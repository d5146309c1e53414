"""``recbole-duet export`` and ``recbole-duet serve``: from a trained checkpoint to a running service.

    recbole-duet export saved/DUET-<time>.pth --out duet-bundle/
    recbole-duet serve duet-bundle/ --port 8000 --token-file token.txt

``export`` needs torch and RecBole, ``serve`` only the ``serve`` extra (onnxruntime, FastAPI, uvicorn); each
imports what it needs when it runs.
"""

import argparse
import sys


def build_deploy_parser():
    parser = argparse.ArgumentParser(prog="recbole-duet", description="Deploy a trained DUET model.")
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="checkpoint -> bundle (ONNX graphs, manifest, item vocabulary)")
    export.add_argument("checkpoint", help="a DUET checkpoint written by training (saved/DUET-<time>.pth)")
    export.add_argument("--out", required=True, help="bundle folder to write (created if missing)")
    export.add_argument("--data_path", default=None, help="folder holding the dataset's folder, if it moved")
    export.add_argument(
        "--verify_users", type=int, default=1000, help="test users to check the bundle on against PyTorch (0: skip)"
    )

    serve = commands.add_parser("serve", help="serve a bundle's parameter generator over HTTP")
    serve.add_argument("bundle", help="folder written by 'recbole-duet export'")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (one core each)")
    serve.add_argument("--token-file", default=None, help="file holding the bearer token clients must send")
    serve.add_argument(
        "--allow-unauthenticated", action="store_true", help="serve a non-loopback --host without a token"
    )
    serve.add_argument("--max-batch", type=int, default=256, help="devices per generator call")
    serve.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a request may wait for a batch")
    serve.add_argument("--max-queue", type=int, default=4096, help="waiting devices before answering 503")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger bodies are answered 413")
    serve.add_argument("--max-devices-per-request", type=int, default=1024, help="windows in one batch request")
    serve.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's log level (default: info)",
    )
    serve.add_argument("--no-access-log", action="store_true", help="do not log every request (uvicorn's access log)")
    return parser


def _export(args):
    from recbole_duet.deploy.export import export_bundle
    from recbole_duet.device.bundle import BundleError
    from recbole_duet.errors import CheckpointError, ConfigError, DatasetNotFoundError

    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value pairs from the command line: these are not overrides
    try:
        manifest = export_bundle(args.checkpoint, args.out, args.data_path, args.verify_users)
    except (CheckpointError, ConfigError, DatasetNotFoundError, BundleError) as error:
        sys.exit(f"error: {error}")
    checked = manifest.get("verification", "not verified")
    print(f"exported {manifest['backbone']} model version {manifest['model_version']} to {args.out} ({checked})")


def _serve(args):
    from recbole_duet.device.bundle import BundleError
    from recbole_duet.serving.app import ServeSettings
    from recbole_duet.serving.server import serve

    settings = ServeSettings(
        bundle=args.bundle,
        token_file=args.token_file,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes,
        max_devices_per_request=args.max_devices_per_request,
        threads=args.threads,
    )
    try:
        serve(
            settings, args.host, args.port, args.workers, args.allow_unauthenticated, args.log_level,
            access_log=not args.no_access_log,
        )
    except (BundleError, ValueError) as error:
        sys.exit(f"error: {error}")


def deploy_main(argv):
    args = build_deploy_parser().parse_args(argv)
    {"export": _export, "serve": _serve}[args.command](args)
