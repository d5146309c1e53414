"""One table for an ablation: the same model trained under several settings, each in its own harness folder.

    python -m benchmarks.ablation_table --model DUET-SASRec --reference SASRec \\
        --variants SASRec=SASRec@benchmarks/results/ml-100k-standard \\
                   cloud-first=benchmarks/results/ml-100k-sasrec-cloud-first \\
        --out benchmarks/results/ml-100k-sasrec-cloud-first/paired-SASRec.json

Each folder is a ``benchmarks.run --out`` (one setting, e.g. ``--config-files benchmarks/configs/ablations/X.yaml``).
A variant may name another model of its folder, ``NAME=MODEL@FOLDER`` (e.g. ``gru4rec=GRU4Rec@<suite folder>``),
to compare models trained under the same protocol in different folders.
Per variant: seeds, mean valid and test NDCG@10 (or ``--metric``), and against the reference variant, over the
seeds both have, the mean valid difference (the number that chooses a default: validation, never test), how many seeds
validation prefers the variant on, and the paired test difference with its 95% bootstrap CI over test users.
Prints a markdown table and writes it as JSON.
"""

import argparse
import json
import os
import statistics

from benchmarks.paired import compare
from benchmarks.per_user import load_per_user
from benchmarks.report import selected_records

METRIC = "ndcg@10"


def variant_runs(folder, model):
    """``seed -> record`` of ``model`` in a harness folder (at the learning rate its validation chose)."""
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as file:
        records = selected_records(json.load(file))
    return {record["seed"]: record for record in records if record["model"] == model}


def variant_row(name, folder, runs, reference_folder, reference_runs, metric=METRIC):
    """One table row: the variant's means of ``metric`` and, on shared seeds, its differences from the reference."""
    row = {
        "variant": name,
        "seeds": sorted(runs),
        "valid": statistics.mean(r["valid"][metric] for r in runs.values()),
        "test": statistics.mean(r["test"][metric] for r in runs.values()),
        "epochs": statistics.mean(r["epochs"] for r in runs.values()),
    }
    shared = sorted(set(runs) & set(reference_runs))
    if name == reference_folder[0] or not shared:
        return row
    valid_differences = [runs[s]["valid"][metric] - reference_runs[s]["valid"][metric] for s in shared]
    paired = compare(
        {s: load_per_user(folder, runs[s]) for s in shared},
        {s: load_per_user(reference_folder[1], reference_runs[s]) for s in shared},
        metric,
    )
    row.update(
        shared_seeds=shared,
        valid_difference=statistics.mean(valid_differences),
        valid_wins=sum(difference > 0 for difference in valid_differences),
        test_difference=paired["mean_difference"],
        test_ci95=paired["ci95"],
        test_p=paired["p_value"],
    )
    return row


def markdown(rows, model, reference, metric=METRIC):
    lines = [
        f"{model}, differences against `{reference}` over shared seeds (test: paired, 95% bootstrap CI over users):",
        "",
        f"| variant | seeds | valid {metric} | test {metric} | epochs | valid diff. (seeds won) | test diff. [95% CI], p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        versus = ""
        if "valid_difference" in row:
            low, high = row["test_ci95"]
            versus = (
                f"| {row['valid_difference']:+.4f} ({row['valid_wins']}/{len(row['shared_seeds'])}) "
                f"| {row['test_difference']:+.4f} [{low:+.4f}, {high:+.4f}], p {row['test_p']:.2g} "
            )
        else:
            versus = "| reference | reference "
        seeds = ", ".join(str(seed) for seed in row["seeds"])
        lines.append(f"| {row['variant']} | {seeds} | {row['valid']:.4f} | {row['test']:.4f} | {row['epochs']:.0f} {versus}|")
    return "\n".join(lines)


def parse_variants(pairs, default_model):
    """``NAME=FOLDER`` or ``NAME=MODEL@FOLDER`` -> ``{name: (folder, model)}``, the model ``default_model`` unless named."""
    variants = {}
    for pair in pairs:
        name, separator, location = pair.partition("=")
        model, at, folder = location.rpartition("@")
        if not separator or not name or not folder or (at and not model):
            raise SystemExit(f"--variants: '{pair}' is not NAME=FOLDER or NAME=MODEL@FOLDER")
        if not os.path.isfile(os.path.join(folder, "results.json")):
            raise SystemExit(f"--variants: '{folder}' holds no results.json")
        variants[name] = (folder, model or default_model)
    return variants


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the harness model name, e.g. DUET-GRU4Rec")
    parser.add_argument("--variants", nargs="+", required=True, help="NAME=FOLDER or NAME=MODEL@FOLDER, one per setting")
    parser.add_argument("--reference", required=True, help="the variant the others are compared with")
    parser.add_argument("--metric", default=METRIC, help="the metric compared, on valid and test (default: %(default)s)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    return parser


def main():
    args = build_parser().parse_args()
    variants = parse_variants(args.variants, args.model)
    if args.reference not in variants:
        raise SystemExit(f"--reference: '{args.reference}' is not one of the variants {sorted(variants)}")
    runs = {name: variant_runs(folder, model) for name, (folder, model) in variants.items()}
    for name, found in runs.items():
        folder, model = variants[name]
        if not found:
            raise SystemExit(f"--variants: no {model} record in '{folder}' ({name})")
    folders = {name: folder for name, (folder, _) in variants.items()}
    reference = (args.reference, folders[args.reference])
    rows = [variant_row(name, folders[name], runs[name], reference, runs[args.reference], args.metric) for name in variants]
    models = {name: model for name, (_, model) in variants.items()}
    with open(args.out, "w", encoding="utf-8") as file:
        summary = {"model": args.model, "metric": args.metric, "reference": args.reference, "variants": folders}
        summary.update(models=models, rows=rows)
        json.dump(summary, file, indent=2)
    print(markdown(rows, args.model, args.reference, args.metric))


if __name__ == "__main__":
    main()
