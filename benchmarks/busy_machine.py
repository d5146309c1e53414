"""One training epoch on an idle machine and beside another CPU-bound job, with torch's threads spinning or
sleeping while they wait (OpenMP's wait policy, :mod:`recbole_duet.threads`), side by side in one run.

    python benchmarks/busy_machine.py --dataset ml-100k --out benchmarks/results/busy-machine

Each timing is one GRU4Rec epoch on ml-100k (histories of 20, batches of 2,048) through RecBole's own trainer,
timed by ``benchmarks/epoch_time.py`` in a fresh process whose environment sets the thread count and the wait
policy before torch loads:

* ``one thread``: ``OMP_NUM_THREADS=1``;
* ``default threads, spinning``: torch's default (a thread per core) with OpenMP's own wait policy, what the
  plugin ran with before it chose one;
* ``default threads, passive``: a thread per core with ``OMP_WAIT_POLICY=PASSIVE``, what the plugin's entry
  points now choose.

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

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = {
    "one thread": {"OMP_NUM_THREADS": "1"},
    "default threads, spinning": {},
    "default threads, passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
WARM_UP_S = 20  # the other job loads its data before it trains; timings start once it does


def environment(setting):
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    return {**env, **SETTINGS[setting]}


def epoch_command(args, out, rounds):
    command = [sys.executable, os.path.join(HERE, "epoch_time.py"), "--only", "GRU4Rec", "--rounds", str(rounds)]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    seconds = {"idle": {}, "beside one job": {}}
    for setting in SETTINGS:
        seconds["idle"][setting] = time_one_epoch(args, setting)
        seconds["beside one job"][setting] = beside_other_job(args, lambda: time_one_epoch(args, setting))
        print(setting, {load: round(by[setting], 1) for load, by in seconds.items()}, flush=True)
    ratios = {load: {s: by[s] / by["one thread"] for s in by} for load, by in seconds.items()}
    result = {
        "dataset": args.dataset,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'unknown CPU'}",
        "what": "wall seconds of one GRU4Rec epoch (histories of 20, batch 2048), benchmarks/epoch_time.py",
        "settings": SETTINGS,
        "seconds": seconds,
        "ratio_to_one_thread": ratios,
    }
    with open(os.path.join(args.out, "results.json.tmp"), "w", encoding="utf-8") as file:
        json.dump(result, file, indent=2)
    os.replace(os.path.join(args.out, "results.json.tmp"), os.path.join(args.out, "results.json"))
    lines = ["| setting | idle s | idle / one thread | beside one job s | beside / one thread |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        lines.append(
            f"| {s} | {seconds['idle'][s]:.1f} | {ratios['idle'][s]:.2f} | {seconds['beside one job'][s]:.1f} | "
            f"{ratios['beside one job'][s]:.2f} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
