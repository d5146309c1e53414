"""Serving benchmark: an exported DUET bundle under ``recbole-duet serve``, driven over HTTP.

    python -m benchmarks.serving --checkpoint saved/DUET-<time>.pth --out benchmarks/results/serving

1. Export the checkpoint (or take ``--bundle``); the export checks the bundle against PyTorch on the dataset's
   test users and the report keeps those numbers.
2. In-process generation rate, the ceiling for the service: the exported generator under onnxruntime for one
   device at a time (p50 / p99) and in batches of 1,024 (devices/s), and PyTorch's ``model.generate`` for one
   device (p50) when the checkpoint is given.
3. A server started by this script on 127.0.0.1 (``--workers`` processes), then a load generator (asynchronous
   httpx clients in ``--client-processes`` processes, one connection per concurrent client) for ``--duration``
   seconds at each concurrency: single-device requests at 1, 8 and 64 concurrent clients and batch requests of
   ``--batch`` devices; latency p50/p95/p99, requests and devices per second, status and error counts, bytes.
   Every 200 answer is checked complete (its parameters decode to the bundle's layout).
4. Resilience: 2 workers under load, one of them killed with SIGKILL mid-run; counts what the clients saw.

The load generator runs on the same machine as the server, so both share its cores. Prints a table and writes
``results.json`` to ``--out``.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

from recbole_duet.device.bundle import PayloadCodec, read_manifest
from recbole_duet.serving.bundle_generator import BundleGenerator

WINDOW_POOL = 1000


def percentiles_ms(seconds):
    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def random_windows(tokens, window_size, n, seed=0):
    rng = random.Random(seed)
    return [[rng.choice(tokens) for _ in range(rng.randint(1, window_size))] for _ in range(n)]


def in_process_rates(bundle, windows, single_samples=2000, batch=1024):
    """The exported generator alone, one thread: per single device (p50/p99) and devices/s in batches."""
    generator = BundleGenerator(bundle)
    ids = [generator.vocabulary.ids(window, "window") for window in windows]

    def payloads(batch):  # what the service sends: each device's payload as JSON text
        return generator.codec.encode_json(generator.parameters(batch))

    payloads(ids[:1])
    single = []
    for i in range(single_samples):
        start = time.perf_counter()
        generator.parameters([ids[i % len(ids)]])
        single.append(time.perf_counter() - start)
    encoded = []
    for i in range(single_samples):
        start = time.perf_counter()
        payloads([ids[i % len(ids)]])
        encoded.append(time.perf_counter() - start)
    many = (ids * (batch // len(ids) + 1))[:batch]
    start, rounds = time.perf_counter(), 5
    for _ in range(rounds):
        payloads(many)
    return {
        "onnx_single_device": percentiles_ms(single),
        "onnx_single_device_with_payload_encoding": percentiles_ms(encoded),
        "onnx_devices_per_s_batch_1024": rounds * batch / (time.perf_counter() - start),
    }


def torch_single_device(checkpoint, data_path=None, samples=500):
    """PyTorch's ``generate`` for one device at a time (p50/p99), one thread, inference mode."""
    import torch

    from recbole_duet.deploy.export import load_trained_model

    torch.set_num_threads(1)
    _, _, loaders, model, _ = load_trained_model(checkpoint, data_path)
    rows = loaders[2]._dataset.inter_feat
    inputs = model.device_inputs(rows)
    times = []
    with torch.inference_mode():
        for i in range(samples):
            one = tuple(tensor[i % len(rows) : i % len(rows) + 1] for tensor in inputs)
            start = time.perf_counter()
            model.generate(*one)
            times.append(time.perf_counter() - start)
    return percentiles_ms(times[10:])


class Server:
    """``recbole-duet serve`` in a child process, stopped by its pid."""

    def __init__(self, bundle, workers, extra=()):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-c", "from recbole_duet.cli import main; main()", "serve", bundle]
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), "--workers", str(workers), "--log-level", "warning", "--no-access-log", *extra],
            env=environment,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def worker_pids(self):
        """uvicorn's worker processes: spawned children running ``spawn_main``."""
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in children.split() if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]

    def cpu_seconds(self):
        """CPU time (user + system) used so far by the server's processes (supervisor and live workers)."""
        total = 0
        for pid in [self.process.pid, *self.worker_pids()]:
            try:
                with open(f"/proc/{pid}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # a worker that just died
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _record(stats, status, body, elapsed, expected_chars):
    """Count one answer; a 200 whose payloads are not all complete counts as truncated."""
    stats["status"][str(status)] = stats["status"].get(str(status), 0) + 1
    if status != 200:
        return
    stats["latencies"].append(elapsed)
    stats["bytes"].append(len(body))
    try:
        answer = json.loads(body)
        payloads = answer["payloads"] if "payloads" in answer else [answer]
        complete = all(len(payload["parameters"]) == expected_chars for payload in payloads)
    except (ValueError, KeyError, TypeError):
        complete = False
    if complete:
        stats["devices"] += len(payloads)
    else:
        stats["truncated"] += 1


def _error(stats, error):
    stats["errors"][type(error).__name__] = stats["errors"].get(type(error).__name__, 0) + 1


async def _httpx_clients(url, path, bodies, expected_chars, concurrency, deadline, stats):
    """``concurrency`` clients sharing one httpx.AsyncClient (one connection each)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one_client():
            i = random.randrange(len(bodies))
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    response = await client.post(path, content=bodies[i % len(bodies)])
                except httpx.HTTPError as error:
                    _error(stats, error)
                    continue
                finally:
                    i += 1
                _record(stats, response.status_code, response.content, time.perf_counter() - start, expected_chars)

        await asyncio.gather(*(one_client() for _ in range(concurrency)))


async def _raw_clients(url, path, bodies, expected_chars, concurrency, deadline, stats):
    """``concurrency`` minimal HTTP/1.1 keep-alive clients on raw asyncio streams: a request, its answer
    framed by Content-Length (a connection that closes early raises IncompleteReadError), repeat.
    Far cheaper per request than httpx, so less of the shared CPU goes to the load generator."""
    host, port = url.rsplit("/", 1)[1].split(":")
    requests = [
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        for body in bodies
    ]

    async def one_client():
        i, connection = random.randrange(len(requests)), None
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(host, int(port))
                reader, writer = connection
                writer.write(requests[i % len(requests)])
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                except asyncio.IncompleteReadError as error:
                    raise ConnectionResetError("closed before answering") if not error.partial else error
                length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
                body = await reader.readexactly(length)  # IncompleteReadError here: a truncated answer
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError) as error:
                _error(stats, error)
                connection = None
                continue
            finally:
                i += 1
            _record(stats, int(head[9:12]), body, time.perf_counter() - start, expected_chars)
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(one_client() for _ in range(concurrency)))


CLIENTS = {"raw": _raw_clients, "httpx": _httpx_clients}


def _load_process(client, url, path, bodies, expected_chars, concurrency, duration, queue):
    stats = {"latencies": [], "bytes": [], "status": {}, "errors": {}, "devices": 0, "truncated": 0}
    deadline = time.perf_counter() + duration
    cpu = time.process_time()
    asyncio.run(CLIENTS[client](url, path, bodies, expected_chars, concurrency, deadline, stats))
    stats["cpu_s"] = time.process_time() - cpu
    queue.put(stats)


def drive(client, server, path, bodies, expected_chars, concurrency, duration, processes, during=None):
    """Run the load for ``duration`` s with ``concurrency`` clients split over ``processes``; merge the stats
    and the CPU time per answered request of the server and of the load generator."""
    url = server.url
    cpu_before = server.cpu_seconds()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    workers = [
        context.Process(target=_load_process, args=(client, url, path, bodies, expected_chars, share, duration, queue))
        for share in shares
        if share
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    if during is not None:
        during()
    parts = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    server_cpu = server.cpu_seconds() - cpu_before
    merged = {"latencies": [], "bytes": [], "status": {}, "errors": {}, "devices": 0, "truncated": 0}
    for part in parts:
        merged["latencies"] += part["latencies"]
        merged["bytes"] += part["bytes"]
        merged["devices"] += part["devices"]
        merged["truncated"] += part["truncated"]
        for key in ("status", "errors"):
            for name, count in part[key].items():
                merged[key][name] = merged[key].get(name, 0) + count
    requests = sum(merged["status"].values())
    return {
        "client": client,
        "concurrency": concurrency,
        "seconds": elapsed,
        "requests": requests,
        "requests_per_s": requests / duration,
        "devices_per_s": merged["devices"] / duration,
        **percentiles_ms(merged["latencies"]),
        "status": merged["status"],
        "client_errors": merged["errors"],
        "truncated_payloads": merged["truncated"],
        "server_errors_5xx": sum(count for status, count in merged["status"].items() if status.startswith("5")),
        "response_bytes": float(np.mean(merged["bytes"])) if merged["bytes"] else None,
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_request": 1000 * server_cpu / max(1, requests),
        "load_generator_cpu_s": sum(part["cpu_s"] for part in parts),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="DUET checkpoint to export (and to time PyTorch's generator on)")
    parser.add_argument("--bundle", help="an exported bundle (instead of --checkpoint)")
    parser.add_argument("--data-path", help="folder holding the dataset's folder, if it moved since training")
    parser.add_argument("--out", required=True)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per scenario")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--batch", type=int, default=256, help="devices per batch request")
    parser.add_argument("--batch-concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--client-processes", type=int, default=1, help="load generator processes")
    parser.add_argument(
        "--clients", nargs="+", choices=sorted(CLIENTS), default=["raw", "httpx"],
        help="load generators for the single-device runs (the first also drives the batch and SIGKILL runs)",
    )
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--kill-duration", type=float, default=10.0, help="seconds of the SIGKILL scenario (0: skip)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    if args.bundle is None:
        from recbole_duet.deploy.export import export_bundle

        args.bundle = os.path.join(args.out, "bundle")
        sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value pairs from the command line
        export_bundle(args.checkpoint, args.bundle, data_path=args.data_path, verify_users=100000)
    manifest = read_manifest(args.bundle)
    codec = PayloadCodec(manifest)
    expected_chars = 5 * sum(codec.sizes)  # base85: 5 characters per 4 bytes, one float32 value
    with open(os.path.join(args.bundle, "items.json"), encoding="utf-8") as file:
        tokens = json.load(file)[1:]
    windows = random_windows(tokens, manifest["window_size"], WINDOW_POOL)

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {key: value for key, value in vars(args).items()},
        "manifest": {key: manifest[key] for key in manifest if key not in ("payload",)},
        "in_process": in_process_rates(args.bundle, windows),
    }
    if args.checkpoint:
        report["in_process"]["torch_single_device"] = torch_single_device(args.checkpoint, args.data_path)
    print(json.dumps(report["in_process"], indent=1))

    single_bodies = [json.dumps({"window": window}).encode() for window in windows]
    batch_bodies = [
        json.dumps({"windows": [windows[(i + j) % len(windows)] for j in range(args.batch)]}).encode()
        for i in range(0, len(windows), 97)
    ]
    server = Server(args.bundle, args.workers, ["--max-wait-ms", str(args.max_wait_ms)])
    try:
        report["single"] = [
            drive(client, server, "/v1/generate", single_bodies, expected_chars, c, args.duration, args.client_processes)
            for client in args.clients
            for c in args.concurrency
        ]
        report["batch"] = [
            drive(args.clients[0], server, "/v1/generate/batch", batch_bodies, expected_chars, c, args.duration,
                  args.client_processes)
            for c in args.batch_concurrency
        ]
    finally:
        server.stop()
    if args.kill_duration > 0:
        report["sigkill"] = sigkill_scenario(args, single_bodies, expected_chars)
    print_table(report)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)


def sigkill_scenario(args, bodies, expected_chars):
    """Two workers under single-device load at concurrency 8; one worker is SIGKILLed a third of the way in."""
    server = Server(args.bundle, 2, ["--max-wait-ms", str(args.max_wait_ms)])
    killed = {}

    def kill_one_worker():
        time.sleep(args.kill_duration / 3)
        before = server.worker_pids()
        os.kill(before[0], signal.SIGKILL)
        killed.update(pid=before[0], workers_before=len(before))

    try:
        result = drive(
            args.clients[0], server, "/v1/generate", bodies, expected_chars, 8, args.kill_duration, 1, kill_one_worker
        )
        time.sleep(2)
        after = server.worker_pids()
        healthy = httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
    return {**result, **killed, "workers_after": len(after), "replaced": killed["pid"] not in after, "healthz_after": healthy}


def print_table(report):
    rows = [("single", r) for r in report["single"]] + [("batch", r) for r in report["batch"]]
    if "sigkill" in report:
        rows.append(("sigkill", report["sigkill"]))
    print(f"{'endpoint':8} {'client':6} {'conc':>4} {'req/s':>8} {'devices/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'5xx':>4} {'errors':>6} {'trunc':>5} {'bytes':>7} {'srv ms/req':>10} {'load ms/req':>11}")
    for name, r in rows:
        errors = sum(r["client_errors"].values())
        print(f"{name:8} {r['client']:6} {r['concurrency']:>4} {r['requests_per_s']:>8.0f} {r['devices_per_s']:>10.0f} "
              f"{r['p50_ms'] or 0:>7.2f} {r['p95_ms'] or 0:>7.2f} {r['p99_ms'] or 0:>7.2f} {r['server_errors_5xx']:>4} "
              f"{errors:>6} {r['truncated_payloads']:>5} {r['response_bytes'] or 0:>7.0f} "
              f"{r['server_cpu_ms_per_request']:>10.3f} {1000 * r['load_generator_cpu_s'] / max(1, r['requests']):>11.3f}")


if __name__ == "__main__":
    main()
