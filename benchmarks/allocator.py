"""A training epoch and a validation pass with glibc's default malloc and with freed blocks kept for reuse
(:mod:`recbole_duet.training.allocator`, what the plugin's runners set), side by side in one run.

    OMP_NUM_THREADS=1 python -m benchmarks.allocator --dataset ml-100k --out benchmarks/results/cost-ml-100k/allocator

The allocator is set per process, so each timing runs in a fresh process (this module with ``--child``): it builds
the model and data as the harness's standard suite does (DIN with RecBole's ``uni100`` protocol,
``benchmarks/configs/din-uni100.yaml``), trains one epoch through RecBole's trainer and validates once, and reports
each phase's wall-clock, its CPU time split into user and system time, and its page faults. Rounds run every
(model, setting) in turn, so a shared machine's slow phases hit both settings alike; the report gives medians and
the ratio of kept over default.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.busy_machine import cpu_model
from benchmarks.run import PROTOCOL, protocol_eval_args, read_config_files, write_json_atomically

MODELS = {"DIN": ["benchmarks/configs/din-uni100.yaml"], "SASRec": [], "GRU4Rec": []}  # config files of each
SETTINGS = ("default", "kept")
PHASES = ("train epoch", "validation")
# What the harness's standard suite adds to its leave-one-out protocol (benchmarks/run.py), short of early stopping.
TRAINING = {"MAX_ITEM_LIST_LENGTH": 20, "seed": 2020}


def timed(phase):
    """``(seconds, user s, system s, minor page faults)`` of running ``phase()`` in this process."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    phase()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "user_seconds": after.ru_utime - before.ru_utime,
        "system_seconds": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
    }


def child(args):
    """One timing in this process: build, train an epoch, validate; print the phases as JSON."""
    if args.setting == "kept":
        from recbole_duet.training.allocator import keep_freed_memory

        if not keep_freed_memory():
            sys.exit("error: the allocator setting could not be applied (not glibc, or MALLOC_* already set)")
    from recbole_duet.config import Config
    from recbole_duet.quick_start import prepare_experiment
    from recbole_duet.training.trainer import get_trainer

    files = MODELS[args.child]
    eval_args = protocol_eval_args("leave-one-out", read_config_files(files))
    config_dict = {**PROTOCOL, "eval_args": eval_args, **TRAINING, "state": "WARNING"}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config(model=args.child, dataset=args.dataset, config_file_list=files, config_dict=config_dict)
    _, (train_data, valid_data, _), model = prepare_experiment(config)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)
    phases = {
        "train epoch": timed(lambda: trainer._train_epoch(train_data, epoch_idx=0, show_progress=False)),
        "validation": timed(lambda: trainer.evaluate(valid_data, load_best_model=False, show_progress=False)),
    }
    print(json.dumps(phases))


def run_child(args, model, setting):
    command = [sys.executable, "-m", "benchmarks.allocator", "--child", model, "--setting", setting]
    command += ["--dataset", args.dataset] + (["--data-path", args.data_path] if args.data_path else [])
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def medians(runs):
    """Each measure's median over ``runs`` (one phase's measures per timing)."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(timings, args, machine):
    """The medians per (model, phase, setting) and the kept / default ratios, as Markdown lines."""
    lines = [
        f"# glibc's default malloc against freed blocks kept ({args.dataset})",
        "",
        f"Machine: {machine}. Command: `python -m benchmarks.allocator --dataset {args.dataset} --rounds {args.rounds}"
        f"{' --models ' + ' '.join(args.models) if args.models != list(MODELS) else ''}`. The harness's leave-one-out"
        f" protocol with `{json.dumps(TRAINING)}` on top, and DIN's `benchmarks/configs/din-uni100.yaml` (RecBole's"
        " `uni100`). Medians over rounds, each timing a fresh process.",
        "",
        "| model | phase | setting | wall s | user s | system s | minor faults | wall kept / default |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = {}
    for model in args.models:
        for phase in PHASES:
            median = {setting: medians([run[phase] for run in timings[model][setting]]) for setting in SETTINGS}
            ratio = median["kept"]["seconds"] / median["default"]["seconds"]
            ratios[f"{model}, {phase}"] = ratio
            for setting in SETTINGS:
                m, shown = median[setting], f"{ratio:.2f}" if setting == "kept" else ""
                lines.append(
                    f"| {model} | {phase} | {setting} | {m['seconds']:.1f} | {m['user_seconds']:.1f} | "
                    f"{m['system_seconds']:.1f} | {m['minor_faults']:,.0f} | {shown} |"
                )
    return lines, ratios


def main():
    parser = build_parser()
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    if args.child:
        return child(args)
    os.makedirs(args.out, exist_ok=True)
    machine = f"{cpu_model()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    timings = {model: {setting: [] for setting in SETTINGS} for model in args.models}
    for round_index in range(args.rounds):
        for model in args.models:
            for setting in SETTINGS:
                timings[model][setting].append(run_child(args, model, setting))
                phases = timings[model][setting][-1]
                print(f"round {round_index + 1}: {model}, {setting}: " + ", ".join(
                    f"{phase} {phases[phase]['seconds']:.1f} s" for phase in PHASES), flush=True)
    lines, ratios = report(timings, args, machine)
    result = {"dataset": args.dataset, "machine": machine, "settings": TRAINING, "rounds": args.rounds,
              "timings": timings, "ratios": ratios}
    write_json_atomically(os.path.join(args.out, "results.json"), result)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=2, help="timings per (model, setting)")
    parser.add_argument("--out", help="the results folder (results.json, results.md)")
    parser.add_argument("--child", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--setting", choices=SETTINGS, default="default", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    main()
