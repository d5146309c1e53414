"""How much a sampled validation (``uni100``) moves when only its negatives are drawn again: each kept model of a
results folder validated with several draws of the 100 negatives per user, the model fixed.

    python -m benchmarks.valid_noise --folder benchmarks/results/ml-100k-gru4rec-bpr-uni100 --draws 10

RecBole draws a sampled evaluation's negatives afresh on every pass, so an early-stopping curve under ``uni100``
moves with the draws as well as with the model, and a training's best valid score is the best of its draws. The
spread of one fixed model over draws says which epoch-to-epoch and model-to-model validation margins are noise.
Output: ``<folder>/valid_noise.json`` and ``valid_noise.md``.
"""

import argparse
import os
import statistics
import sys

from benchmarks.kept_models import kept_records, load_kept_model
from benchmarks.run import write_json_atomically
from recbole_duet.training.sampled_validation import numpy_seeded
from recbole_duet.training.trainer import get_trainer

METRIC = "ndcg@10"


def summary(scores):
    """Mean, sample standard deviation and range of one model's validation over draws."""
    return {
        "draws": len(scores),
        "mean": statistics.mean(scores),
        "sd": statistics.stdev(scores),
        "min": min(scores),
        "max": max(scores),
        "scores": list(scores),
    }


def valid_scores_over_draws(record, folder, draws, data_path):
    """Valid NDCG@10 of ``record``'s kept model with the negatives drawn under numpy seeds 0 to ``draws - 1``."""
    config, model, (_, valid_data, _) = load_kept_model(record, folder, data_path)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    scores = []
    for draw in range(draws):
        with numpy_seeded(draw):
            scores.append(float(trainer.evaluate(valid_data, load_best_model=False)[METRIC]))
    return scores


def markdown(rows, folder):
    lines = [
        f"# Validation over draws of the negatives, {folder}",
        "",
        "Each kept model validated again with fresh draws of its sampled negatives, the model fixed.",
        "",
        f"| model | seed | draws | mean {METRIC} | sd | min | max | recorded best valid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['seed']} | {row['draws']} | {row['mean']:.4f} | {row['sd']:.4f} | "
            f"{row['min']:.4f} | {row['max']:.4f} | {row['recorded_valid']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="a harness results folder with kept models")
    parser.add_argument("--models", nargs="+", default=None, help="record names (default: every kept one)")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--data-path", default=None)
    return parser


def main():
    args = build_parser().parse_args()
    if args.draws < 2:
        sys.exit(f"--draws {args.draws}: at least 2, to measure a spread")
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    chosen = [r for r in kept_records(args.folder) if args.models is None or r["model"] in args.models]
    if not chosen:
        sys.exit(f"{args.folder}: no record with a kept model in models/" + (f" among {args.models}" if args.models else ""))
    rows = []
    for record in chosen:
        scores = valid_scores_over_draws(record, args.folder, args.draws, args.data_path)
        rows.append({"model": record["model"], "seed": record["seed"], "recorded_valid": record["valid"][METRIC],
                     **summary(scores)})
    write_json_atomically(os.path.join(args.folder, "valid_noise.json"), rows)
    table = markdown(rows, args.folder)
    with open(os.path.join(args.folder, "valid_noise.md"), "w", encoding="utf-8") as file:
        file.write(table)
    print(table)


if __name__ == "__main__":
    main()
