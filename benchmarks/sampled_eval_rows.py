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
quick suite's settings under ``--config-files`` (default: BPR on one sampled negative, ``uni100``), leave-one-out.
"""

import argparse

from benchmarks.validation_timing import (
    machine,
    parse_timing_arguments,
    time_settings,
    train_for_timing,
    write_and_print,
)
from recbole_duet.model.device_rows import deduplicate_forward_rows

EVERY_ROW = "every row"
ONCE_PER_HISTORY = "once per history"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SASRec", help="a RecBole sequential model, or DUET")
    parser.add_argument("--backbone", default="SASRec", help="DUET's backbone")
    args = parse_timing_arguments(parser, "bpr-uni100.yaml")
    config_dict, run = train_for_timing(args, args.backbone)
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
