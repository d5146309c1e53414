"""Training time per epoch, side by side in one process: RecBole's backbones with autograd's anomaly mode on
(as RecBole leaves it) and off (the plugin's default), with RecBole's element-wise GELU and with the fused one
(:mod:`recbole_duet.training.speedups`, the plugin's), and DUET against its backbone.

    OMP_NUM_THREADS=1 python -m benchmarks.epoch_time --dataset ml-100k --out benchmarks/results/cost-ml-100k/epoch-time

Every variant is built first (same data, same settings); then each round trains every variant for one epoch
through RecBole's own trainer (``_train_epoch``), in turn, so slow phases of a shared machine hit all variants
alike. Each epoch is timed twice: wall-clock, and the CPU time of this process, which other jobs on a busy
machine disturb far less (with one thread, CPU seconds are the work done). The table reports medians over
rounds and the ratios that the issue targets, from CPU time; ``results.json`` keeps every epoch's seconds.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from recbole_duet.config import Config
from recbole_duet.quick_start import prepare_experiment
from recbole_duet.training.speedups import use_recbole_activations
from recbole_duet.training.trainer import get_trainer

SETTINGS = {
    "MAX_ITEM_LIST_LENGTH": 20,
    "train_batch_size": 2048,
    "show_progress": False,
    "state": "WARNING",
    "seed": 2020,
}
# DUET(SASRec) as its committed timings were measured: with ppg_scope 'all' (SASRec's default became 'generator'
# after them, docs/BENCHMARKS.md).
DUET_SASREC = {"backbone": "SASRec", "ppg_scope": "all"}
# (name, model, overrides); DIN variants also get DIN's own protocol, which RecBole loads for it by name.
VARIANTS = [
    ("SASRec, anomaly on", "SASRec", {"detect_anomaly": True}),
    ("SASRec", "SASRec", {}),
    ("SASRec, RecBole's GELU", "SASRec", {}),
    ("DUET(SASRec)", "DUET", DUET_SASREC),
    ("DUET(SASRec), RecBole's GELU", "DUET", DUET_SASREC),
    ("DUET(SASRec), generator_input=backbone", "DUET", {**DUET_SASREC, "generator_input": "backbone"}),
    ("DUET(SASRec), head_encoder=attention", "DUET", {**DUET_SASREC, "head_encoder": "attention"}),
    ("DUET(SASRec), umn_weight=0", "DUET", {**DUET_SASREC, "umn_weight": 0.0}),
    ("GRU4Rec, anomaly on", "GRU4Rec", {"detect_anomaly": True}),
    ("GRU4Rec", "GRU4Rec", {}),
    ("DUET(GRU4Rec)", "DUET", {"backbone": "GRU4Rec"}),
    ("DUET(GRU4Rec), generator_input=backbone", "DUET", {"backbone": "GRU4Rec", "generator_input": "backbone"}),
    ("DUET(GRU4Rec), head_encoder=attention", "DUET", {"backbone": "GRU4Rec", "head_encoder": "attention"}),
    ("DUET(GRU4Rec), umn_weight=0", "DUET", {"backbone": "GRU4Rec", "umn_weight": 0.0}),
    ("DIN, anomaly on", "DIN", {"detect_anomaly": True}),
    ("DIN", "DIN", {}),
    ("DUET(DIN)", "DUET", {"backbone": "DIN"}),
]
# Variants whose built model gets RecBole's own element-wise activations back.
WITH_RECBOLE_ACTIVATIONS = {"SASRec, RecBole's GELU", "DUET(SASRec), RecBole's GELU"}
# (label, numerator, denominator) of the ratios printed under the table.
RATIOS = [
    ("SASRec: anomaly on / off", "SASRec, anomaly on", "SASRec"),
    ("GRU4Rec: anomaly on / off", "GRU4Rec, anomaly on", "GRU4Rec"),
    ("DIN: anomaly on / off", "DIN, anomaly on", "DIN"),
    ("SASRec: fused / RecBole's GELU", "SASRec", "SASRec, RecBole's GELU"),
    ("DUET(SASRec): fused / RecBole's GELU", "DUET(SASRec)", "DUET(SASRec), RecBole's GELU"),
    ("DUET(SASRec) / SASRec", "DUET(SASRec)", "SASRec"),
    ("DUET(SASRec), generator_input=backbone / SASRec", "DUET(SASRec), generator_input=backbone", "SASRec"),
    ("DUET(SASRec), head_encoder=attention / SASRec", "DUET(SASRec), head_encoder=attention", "SASRec"),
    ("DUET(SASRec), umn_weight=0 / SASRec", "DUET(SASRec), umn_weight=0", "SASRec"),
    ("DUET(GRU4Rec) / GRU4Rec", "DUET(GRU4Rec)", "GRU4Rec"),
    ("DUET(GRU4Rec), generator_input=backbone / GRU4Rec", "DUET(GRU4Rec), generator_input=backbone", "GRU4Rec"),
    ("DUET(GRU4Rec), head_encoder=attention / GRU4Rec", "DUET(GRU4Rec), head_encoder=attention", "GRU4Rec"),
    ("DUET(GRU4Rec), umn_weight=0 / GRU4Rec", "DUET(GRU4Rec), umn_weight=0", "GRU4Rec"),
    ("DUET(DIN) / DIN", "DUET(DIN)", "DIN"),
]


class Variant:
    """One model ready to train: its config, training data and RecBole trainer."""

    def __init__(self, name, model, overrides, args):
        config_dict = {**SETTINGS, **overrides}
        if args.data_path:
            config_dict["data_path"] = args.data_path
        self.name = name
        self.config = Config(model=model, dataset=args.dataset, config_dict=config_dict)
        _, (self.train_data, _, _), model = prepare_experiment(self.config)
        if name in WITH_RECBOLE_ACTIVATIONS:
            use_recbole_activations(model)
        self.trainer = get_trainer(self.config["MODEL_TYPE"], self.config["model"])(self.config, model)
        self.seconds = []
        self.cpu_seconds = []

    def train_one_epoch(self):
        torch.autograd.set_detect_anomaly(self.config["detect_anomaly"])
        start, cpu_start = time.perf_counter(), time.process_time()
        self.trainer._train_epoch(self.train_data, epoch_idx=len(self.seconds), show_progress=False)
        self.cpu_seconds.append(time.process_time() - cpu_start)
        self.seconds.append(time.perf_counter() - start)


def report(variants, args):
    median = {v.name: statistics.median(v.cpu_seconds) for v in variants}
    lines = ["| variant | CPU s / epoch (median) | wall s / epoch (median) | epochs timed |", "|---|---|---|---|"]
    lines += [
        f"| {v.name} | {median[v.name]:.1f} | {statistics.median(v.seconds):.1f} | {len(v.seconds)} |" for v in variants
    ]
    lines += ["", "| ratio | value |", "|---|---|"]
    ratios = {label: median[top] / median[bottom] for label, top, bottom in RATIOS if {top, bottom} <= set(median)}
    lines += [f"| {label} | {value:.2f} |" for label, value in ratios.items()]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    result = {
        "dataset": args.dataset,
        "machine": machine,
        "settings": SETTINGS,
        "rounds": args.rounds,
        "wall_seconds": {v.name: v.seconds for v in variants},
        "cpu_seconds": {v.name: v.cpu_seconds for v in variants},
        "ratios": ratios,
    }
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump(result, file, indent=2)
    print(f"{args.dataset}, {machine}\n" + "\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--rounds", type=int, default=1, help="epochs timed per variant")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    os.makedirs(args.out, exist_ok=True)
    chosen = [spec for spec in VARIANTS if args.only is None or spec[0] in args.only]
    variants = [Variant(name, model, overrides, args) for name, model, overrides in chosen]
    for round_index in range(args.rounds):
        for variant in variants:
            variant.train_one_epoch()
            print(
                f"round {round_index + 1}: {variant.name} {variant.cpu_seconds[-1]:.1f} CPU s, {variant.seconds[-1]:.1f} s",
                flush=True,
            )
    report(variants, args)


if __name__ == "__main__":
    main()
