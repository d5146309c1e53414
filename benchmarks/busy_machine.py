"""One training epoch on an idle machine and beside another CPU-bound job, with torch's threads spinning or
sleeping while they wait (OpenMP's wait policy, :mod:`recbole_duet.training.threads`), side by side in one run.

    python -m benchmarks.busy_machine --dataset ml-100k --out benchmarks/results/cost-ml-100k/busy-machine

Each timing is one GRU4Rec epoch on ml-100k (histories of 20, batches of 2,048) through the plugin's trainer,
timed by ``benchmarks/epoch_time.py`` in a fresh process whose environment sets the threads before torch loads:

* ``one thread``: ``OMP_NUM_THREADS=1``;
* ``a thread per core, spinning``: torch's default count, fixed, with OpenMP's own wait policy: what the plugin
  ran with before it balanced its threads;
* ``a thread per core, passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep);
* ``a thread per core, spin 10k / 30k``: the same with GNU OpenMP's spin before sleeping cut to that many;
* ``balanced (the plugin's default)``: no thread setting: before each epoch the trainer gives torch the cores
  that no other runnable thread is using (:mod:`recbole_duet.training.threads`).

Each is timed on the idle machine and beside one other job, a single-threaded training of the same model
started first and kept running until the timing ends. The report gives each setting's seconds and its ratio to
one thread under the same load.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CORES = str(len(os.sched_getaffinity(0)))
SETTINGS = {
    "one thread": {"OMP_NUM_THREADS": "1"},
    "a thread per core, spinning": {"OMP_NUM_THREADS": CORES},
    "a thread per core, passive": {"OMP_NUM_THREADS": CORES, "OMP_WAIT_POLICY": "PASSIVE"},
    # GNU OpenMP's own bound on the spin before a waiting thread sleeps (its default is 300,000 spins)
    "a thread per core, spin 10k": {"OMP_NUM_THREADS": CORES, "GOMP_SPINCOUNT": "10000"},
    "a thread per core, spin 30k": {"OMP_NUM_THREADS": CORES, "GOMP_SPINCOUNT": "30000"},
    "balanced (the plugin's default)": {},
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")
WARM_UP_S = 20  # the other job loads its data before it trains; timings start once it does


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def environment(setting):
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    return {**env, **SETTINGS[setting]}


def epoch_command(args, out, rounds):
    command = [sys.executable, "-m", "benchmarks.epoch_time", "--only", "GRU4Rec", "--rounds", str(rounds)]
    command += ["--dataset", args.dataset, "--out", out]
    return command + (["--data-path", args.data_path] if args.data_path else [])


def time_one_epoch(args, setting):
    """Wall seconds of one epoch under ``setting``, read from epoch_time.py's results."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(epoch_command(args, out, 1), env=environment(setting), check=True, capture_output=True)
        with open(os.path.join(out, "results.json"), encoding="utf-8") as file:
            return json.load(file)["wall_seconds"]["GRU4Rec"][0]


def beside_other_job(args, measure):
    """Run ``measure()`` while a single-threaded training of the same model runs."""
    with tempfile.TemporaryDirectory() as out:
        other = subprocess.Popen(
            epoch_command(args, out, 1000), env=environment("one thread"), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(WARM_UP_S)
            return measure()
        finally:
            other.kill()
            other.wait()


def report(result):
    """results.md: each setting's seconds and its ratio to one thread under the same load."""
    seconds, ratios = result["seconds"], result["ratio_to_one_thread"]
    lines = [
        f"# One training epoch on a busy machine ({result['dataset']})",
        "",
        f"Machine: {result['machine']}. What: {result['what']}. Written by `benchmarks/busy_machine.py`.",
        "",
        "| setting | idle s | idle / one thread | beside one job s | beside / one thread |",
        "|---|---|---|---|---|",
    ]
    for s in seconds["idle"]:
        lines.append(
            f"| {s} | {seconds['idle'][s]:.1f} | {ratios['idle'][s]:.2f} | {seconds['beside one job'][s]:.1f} | "
            f"{ratios['beside one job'][s]:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--report-only", action="store_true", help="rewrite results.md from results.json")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.report_only:
        with open(os.path.join(args.out, "results.json"), encoding="utf-8") as file:
            result = json.load(file)
    else:
        seconds = {"idle": {}, "beside one job": {}}
        for setting in SETTINGS:
            seconds["idle"][setting] = time_one_epoch(args, setting)
            seconds["beside one job"][setting] = beside_other_job(args, lambda: time_one_epoch(args, setting))
            print(setting, {load: round(by[setting], 1) for load, by in seconds.items()}, flush=True)
        result = {
            "dataset": args.dataset,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}",
            "what": "wall seconds of one GRU4Rec epoch (histories of 20, batch 2048), benchmarks/epoch_time.py",
            "settings": SETTINGS,
            "seconds": seconds,
            "ratio_to_one_thread": {load: {s: by[s] / by["one thread"] for s in by} for load, by in seconds.items()},
        }
        write_atomically(os.path.join(args.out, "results.json"), json.dumps(result, indent=2))
    write_atomically(os.path.join(args.out, "results.md"), report(result))
    print(report(result))


if __name__ == "__main__":
    main()
