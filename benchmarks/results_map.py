"""The README's results map: for each regime and backbone, DUET against the same cloud model without a generator
(its Layers model) and against the plain backbone, with paired 95% CIs, computed from the committed harness
folders' per-case metrics.

    python -m benchmarks.results_map            # rewrite the README block and benchmarks/results/results_map.json
    python -m benchmarks.results_map --check    # exit 1 if the README block is not what the results give

``ROWS`` names, for each row, the harness folder and model of DUET, of its Layers model (the cloud model its
generator stage started from) and of the backbone; the comparisons pool the seeds all three share. A test reruns
this script and diffs its output with the README, so the map cannot drift from the results behind it.
"""

import argparse
import json
import os
import statistics
import sys

from benchmarks.ablation_table import variant_runs
from benchmarks.paired import compare_all, interval
from benchmarks.per_user import load_per_user

RESULTS = "benchmarks/results"
README = "README.md"
START, END = "<!-- results map: start -->", "<!-- results map: end -->"
METRIC = "ndcg@10"

# (regime, dataset, backbone, {role: (model, folder under benchmarks/results)}), in the map's order.
ROWS = [
    ("leave-one-out", "Beauty", "SASRec", {
        "DUET": ("DUET-SASRec", "beauty-seq-sasrec-cloud-first"),
        "Layers": ("Layers-SASRec", "beauty-seq-sasrec-cloud-first"),
        "backbone": ("SASRec", "beauty-seq-standard"),
    }),
    ("leave-one-out", "Beauty", "GRU4Rec", {
        "DUET": ("DUET-GRU4Rec", "beauty-seq-gru4rec-cloud-first-generator-lr-0.3-update-dropout-0.3-layers-3"),
        "Layers": ("Layers-GRU4Rec", "beauty-seq-gru4rec-cloud-first-generator-lr-0.3-update-dropout-0.3-layers-3"),
        "backbone": ("GRU4Rec", "beauty-seq-standard"),
    }),
    ("leave-one-out", "ml-100k", "SASRec", {
        "DUET": ("DUET-SASRec", "ml-100k-sasrec-cloud-first"),
        "Layers": ("Layers-SASRec", "ml-100k-sasrec-cloud-first"),
        "backbone": ("SASRec", "ml-100k-standard"),
    }),
    ("leave-one-out", "ml-100k", "GRU4Rec", {
        "DUET": ("DUET-GRU4Rec", "ml-100k-gru4rec-cloud-first"),
        "Layers": ("Layers-GRU4Rec", "ml-100k-gru4rec-cloud-first"),
        "backbone": ("GRU4Rec", "ml-100k-standard"),
    }),
    ("time split", "Beauty", "SASRec", {
        "DUET": ("DUET-SASRec", "time-split-beauty-time"),
        "Layers": ("Layers-SASRec", "time-split-beauty-time"),
        "backbone": ("SASRec", "time-split-beauty-time"),
    }),
    ("time split", "Beauty", "GRU4Rec", {
        "DUET": ("DUET-GRU4Rec", "time-split-beauty-time"),
        "Layers": ("Layers-GRU4Rec", "time-split-beauty-time"),
        "backbone": ("GRU4Rec", "time-split-beauty-time"),
    }),
    ("uni100", "ml-100k", "DIN", {
        "DUET": ("DUET-DIN", "ml-100k-din-standard"),
        "Layers": ("Layers-DIN", "ml-100k-din-standard"),
        "backbone": ("DIN", "ml-100k-din-standard"),
    }),
    ("uni100", "Beauty", "DIN", {
        "DUET": ("DUET-DIN", "beauty-time-din-standard"),
        "Layers": ("Layers-DIN", "beauty-time-din-standard"),
        "backbone": ("DIN", "beauty-time-din-standard"),
    }),
    ("uni100, history 10", "ml-100k", "DIN", {  # the history DIN's validation chose; Layers-DIN is DIN
        "DUET": ("DUET-DIN", "ml-100k-din-history-10"),
        "Layers": ("DIN", "ml-100k-din-history-10"),
        "backbone": ("DIN", "ml-100k-din-history-10"),
    }),
    ("time split, uni100", "ml-100k", "DIN", {
        "DUET": ("DUET-DIN", "time-split-ml-100k-din"),
        "Layers": ("Layers-DIN", "time-split-ml-100k-din"),
        "backbone": ("DIN", "time-split-ml-100k-din"),
    }),
    ("BPR, uni100", "ml-100k", "SASRec", {
        "DUET": ("DUET-SASRec", "ml-100k-sasrec-bpr-uni100"),
        "Layers": ("Layers-SASRec", "ml-100k-sasrec-bpr-uni100"),
        "backbone": ("SASRec", "ml-100k-sasrec-bpr-uni100"),
    }),
    ("BPR, uni100", "ml-100k", "GRU4Rec", {
        "DUET": ("DUET-GRU4Rec", "ml-100k-gru4rec-bpr-uni100"),
        "Layers": ("Layers-GRU4Rec", "ml-100k-gru4rec-bpr-uni100"),
        "backbone": ("GRU4Rec", "ml-100k-gru4rec-bpr-uni100"),
    }),
    ("time split, BPR", "Beauty", "SASRec", {
        "DUET": ("DUET-SASRec", "time-split-beauty-time-bpr-uni100"),
        "Layers": ("Layers-SASRec", "time-split-beauty-time-bpr-uni100"),
        "backbone": ("SASRec", "time-split-beauty-time-bpr-uni100"),
    }),
    ("time split, uni100", "Beauty", "DIN", {
        "DUET": ("DUET-DIN", "time-split-beauty-time-din"),
        "Layers": ("Layers-DIN", "time-split-beauty-time-din"),
        "backbone": ("DIN", "time-split-beauty-time-din"),
    }),
]


def cost_ratio(runs, seeds):
    """Mean over seeds of a DUET run's wall-clock over the backbone's, counting only seeds whose three runs name the
    same machine; None if no seed does. A DUET trained on a fixed cloud model (``cloud_checkpoint``, the Layers
    model) costs that cloud model's training too; one that trained its own cloud model in the run (jointly, as
    DUET(DIN) does, or both stages of ``cloud_first``) costs its one run."""
    ratios = []
    for seed in seeds:
        layers, duet, backbone = (runs[role][seed] for role in ("Layers", "DUET", "backbone"))
        machines = {record.get("machine") for record in (layers, duet, backbone)}
        if len(machines) == 1 and None not in machines:
            duet_run = duet["wall_seconds"]
            if "cloud_checkpoint" in duet["config"]:
                duet_run += layers["wall_seconds"]
            ratios.append(duet_run / backbone["wall_seconds"])
    return (statistics.mean(ratios), len(ratios)) if ratios else None


def verdict(low, high):
    """What the CI of DUET - Layers says about the generated update."""
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    return "none"


def map_rows(results=RESULTS):
    """One dict per row of ``ROWS``: the seeds, DUET's test metric and its paired differences with CIs."""
    requests, rows = [], []
    for regime, dataset, backbone, roles in ROWS:
        runs = {role: variant_runs(os.path.join(results, folder), model) for role, (model, folder) in roles.items()}
        seeds = sorted(set.intersection(*(set(found) for found in runs.values())))
        per_case = {
            role: {seed: load_per_user(os.path.join(results, roles[role][1]), runs[role][seed]) for seed in seeds}
            for role in roles
        }
        requests += [(per_case["DUET"], per_case["Layers"], METRIC), (per_case["DUET"], per_case["backbone"], METRIC)]
        rows.append({
            "regime": regime, "dataset": dataset, "backbone": backbone, "seeds": seeds,
            "folders": {role: f"{RESULTS}/{folder}" for role, (_, folder) in roles.items()},
            "duet_test": statistics.mean(runs["DUET"][seed]["test"][METRIC] for seed in seeds),
            "cost": cost_ratio(runs, seeds),
        })
    comparisons = iter(compare_all(requests))
    for row in rows:
        for versus in ("layers", "backbone"):
            result = next(comparisons)
            row[f"minus_{versus}"] = result["mean_difference"]
            row[f"minus_{versus}_ci95"] = list(result["ci95"])
            row[f"minus_{versus}_ratio"] = statistics.mean(result["ratios"])
    return rows


def markdown(rows):
    lines = [
        "Test NDCG@10 differences, paired over the same test cases and pooled over seeds, with 95% bootstrap CIs",
        "(users resampled). *Layers*: the cloud model DUET's generator stage started from, without the generator",
        "(DIN's generated layers are its own prediction MLP, so its Layers model is DIN). *uni100*: each test item",
        "ranked against 100 sampled ones, RecBole's protocol for DIN (leave-one-out unless the split says otherwise,",
        "as *time split* does: every interaction after a global time boundary is a test case). *History 10*: histories",
        "cut to the generator's window (elsewhere 20), the length DIN's validation chose. *BPR*: trained on one sampled",
        "negative per target (RecBole's BPR) instead of cross-entropy over every item, the paper's protocol for SASRec",
        "and GRU4Rec, always with uni100. *Cost*: a DUET run (cloud model, then generator; DIN's one joint training)",
        "over a backbone run, wall-clock, on the seeds whose three runs name one machine (a shared 2-core CPU, where",
        "the load beside a run varied). *Update*: what the CI of DUET − Layers says of the generated update.",
        "",
        "| data | split | backbone | seeds | DUET − Layers | DUET − backbone | cost | update |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cost = "–" if row["cost"] is None else f"{row['cost'][0]:.1f}× ({row['cost'][1]})"
        lines.append(
            f"| {row['dataset']} | {row['regime']} | {row['backbone']} | {len(row['seeds'])} | "
            f"{row['minus_layers']:+.4f} {interval(row['minus_layers_ci95'])} | "
            f"{row['minus_backbone']:+.4f} {interval(row['minus_backbone_ci95'])} | "
            f"{cost} | {verdict(*row['minus_layers_ci95'])} |"
        )
    return "\n".join(lines)


def replace_block(text, block):
    start, end = text.index(START) + len(START), text.index(END)
    return text[:start] + "\n" + block + "\n" + text[end:]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the README instead of writing it")
    return parser


def main():
    args = build_parser().parse_args()
    rows = map_rows()
    with open(README, encoding="utf-8") as file:
        readme = file.read()
    updated = replace_block(readme, markdown(rows))
    if args.check:
        if updated != readme:
            sys.exit("README.md's results map is not what the committed results give: run python -m benchmarks.results_map")
        return
    with open(README, "w", encoding="utf-8") as file:
        file.write(updated)
    with open(os.path.join(RESULTS, "results_map.json"), "w", encoding="utf-8") as file:
        json.dump(rows, file, indent=2)
    print(markdown(rows))


if __name__ == "__main__":
    main()
