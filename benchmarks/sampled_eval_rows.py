"""Validation time of a sequential model under RecBole's sampled protocol with its history encoded on every row and
once per test case.

Under ``uni100`` a test case is 101 rows that repeat its history, and a sequential model's ``predict`` encodes the
history on each of them. Every model the plugin builds encodes each distinct row once when evaluating
(:func:`recbole_duet.model.device_rows.deduplicate_forward_rows`). This measures the whole validation through
RecBole's own ``Trainer.evaluate``, every row against once per history, rounds alternating in one process, and
checks that both give the same scores and metrics.

    OMP_NUM_THREADS=1 python -m benchmarks.sampled_eval_rows --model SASRec --rounds 3 \\
        --out benchmarks/results/cost-ml-100k/sampled-eval-rows-sasrec

``--model DUET --backbone SASRec`` measures DUET(SASRec). The model is trained ``--epochs`` epochs first with the
quick suite's settings under ``--config-file`` (default: BPR on one sampled negative, ``uni100``), leave-one-out.
"""

import argparse
import os
import sys

from benchmarks.din_uni100_scoring import CONFIGS_DIR, quick_sampled_config
from benchmarks.validation_timing import machine, time_settings, write_and_print
from recbole_duet.config import Config
from recbole_duet.model.device_rows import deduplicate_forward_rows
from recbole_duet.quick_start import run_experiment

EVERY_ROW = "every row"
ONCE_PER_HISTORY = "once per history"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="SASRec", help="a RecBole sequential model, or DUET")
    parser.add_argument("--backbone", default="SASRec", help="DUET's backbone")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config-file", default=os.path.join(CONFIGS_DIR, "bpr-uni100.yaml"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides

    config_dict = quick_sampled_config(args.config_file, args.epochs, args.backbone)
    if args.model != "DUET":
        del config_dict["backbone"]
    run = run_experiment(Config(model=args.model, dataset=args.dataset, config_dict=config_dict), saved=False)
    trainer, valid_data = run["trainer"], run["data"][1]
    model = trainer.model.eval()

    settings = {
        EVERY_ROW: lambda: model.__dict__.pop("forward", None),  # the class's own forward
        ONCE_PER_HISTORY: lambda: deduplicate_forward_rows(model),
    }
    rows = time_settings(trainer, valid_data, settings, args.rounds)
    record = {
        "dataset": args.dataset,
        "model": args.model if args.model != "DUET" else f"DUET({args.backbone})",
        "valid_cases": len(valid_data.uid_list),
        "trained_epochs": run["epochs"],
        "rounds": args.rounds,
        "config": config_dict,
        "machine": machine(),
        "settings": rows,
    }
    write_and_print(args.out, record, record["valid_cases"], "histories encoded")


if __name__ == "__main__":
    main()
