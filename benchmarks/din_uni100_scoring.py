"""Scoring time of one DUET(DIN) model under RecBole's sampled protocol, per ``duet_inference`` mode, and of the
fine-tuning baseline (``model: Finetune``) on it.

Under ``uni100`` RecBole's evaluator calls ``predict`` on 101 rows per test user (the target and 100 sampled
items). ``predict`` personalises each distinct device once and shares its MLP across those rows, so fine-tuning
(``finetune``) should cost a small multiple of generating (``generated``), not 101 fine-tunings per user. The
target is finetune within 3x of generated.

    OMP_NUM_THREADS=1 python -m benchmarks.din_uni100_scoring --dataset ml-100k --epochs 1 \\
        --out benchmarks/results/cost-ml-100k/din-uni100-scoring

DUET(DIN) is trained ``--epochs`` epochs with the quick suite's settings and ``benchmarks/configs/din-uni100.yaml``
(as ``benchmarks/run.py`` trains it); the same model (for ``finetune``: the fine-tuning baseline on its checkpoint)
then scores the whole test set through RecBole's own ``Trainer.evaluate`` once per mode, side by side in one
process. Speed does not depend on how well the
model is trained; the metrics are printed only to show that each mode scores something sensible.
"""

import argparse
import json
import os
import platform
import sys
import time

import torch

from benchmarks.run import FIRST_SEED, PROTOCOL, SUITES, protocol_eval_args, read_config_files
from recbole_duet.config import Config
from recbole_duet.quick_start import build_model, run_experiment
from recbole_duet.training.trainer import get_trainer

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

INFERENCE_MODES = ("generated", "global")  # DUET's own; "finetune" is the fine-tuning baseline on its checkpoint
MODES = (*INFERENCE_MODES, "finetune")
TARGET_RATIO = 3.0


def quick_sampled_config(config_files, epochs, backbone):
    """The quick suite's settings for DUET on ``backbone`` under ``config_files``' sampled protocol (later files
    win), leave-one-out, the first seed (drop ``backbone`` for the backbone alone)."""
    files = read_config_files(config_files)
    protocol = {key: value for _, settings in files for key, value in settings.items()}
    return {
        **PROTOCOL,
        **SUITES["quick"],
        **protocol,
        "eval_args": protocol_eval_args("leave-one-out", files),
        "backbone": backbone,
        "epochs": epochs,
        "seed": FIRST_SEED,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before scoring")
    parser.add_argument("--config-file", default=os.path.join(CONFIGS_DIR, "din-uni100.yaml"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides

    config_dict = quick_sampled_config([args.config_file], args.epochs, "DIN")
    config = Config(model="DUET", dataset=args.dataset, config_dict=config_dict)
    run = run_experiment(config)  # saved: the fine-tuning baseline starts from its checkpoint
    trainer, test_data = run["trainer"], run["data"][2]
    users = len(test_data.uid_list)
    finetune_config = Config(
        model="Finetune", dataset=args.dataset, config_dict={**config_dict, "cloud_checkpoint": trainer.saved_model_file}
    )
    finetune = build_model(finetune_config, run["data"][0]._dataset)
    scorers = {"finetune": get_trainer(finetune_config["MODEL_TYPE"], "Finetune")(finetune_config, finetune)}

    timings = {}
    for mode in MODES:
        if mode in INFERENCE_MODES:
            trainer.model.inference = mode
        start = time.perf_counter()
        metrics = scorers.get(mode, trainer).evaluate(test_data, load_best_model=False, show_progress=False)
        seconds = time.perf_counter() - start
        timings[mode] = {"seconds": seconds, "ms_per_user": 1000 * seconds / users, "test": {k: float(v) for k, v in metrics.items()}}
    for timing in timings.values():
        timing["vs_generated"] = timing["seconds"] / timings["generated"]["seconds"]

    record = {
        "dataset": args.dataset,
        "test_users": users,
        "rows_per_user": 101,
        "trained_epochs": run["epochs"],
        "config": config_dict,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "scoring": timings,
        "finetune_within_target": timings["finetune"]["vs_generated"] <= TARGET_RATIO,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    print(f"DUET(DIN), {args.dataset}, {users} test users x 101 rows, trained {run['epochs']} epoch(s)")
    print("| duet_inference | seconds | ms / user | x generated | NDCG@10 |\n|---|---|---|---|---|")
    for mode, timing in timings.items():
        print(f"| {mode} | {timing['seconds']:.2f} | {timing['ms_per_user']:.2f} | {timing['vs_generated']:.2f} | {timing['test']['ndcg@10']:.4f} |")
    print(f"finetune within {TARGET_RATIO:g}x of generated: {record['finetune_within_target']}")


if __name__ == "__main__":
    main()
