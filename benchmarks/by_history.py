"""Which users a difference comes from: a suite's paired comparisons split by the length of each test user's history.

    python benchmarks/by_history.py --folder benchmarks/results/beauty-seq-standard --data-path ../shared/data \\
        --pairs DUET-SASRec:SASRec DUET-SASRec:Layers-SASRec DUET-GRU4Rec:GRU4Rec DUET-GRU4Rec:Layers-GRU4Rec \\
        --out benchmarks/results/by-history-beauty-seq.json

A test user's history is every interaction but the test one. When it holds no more items than DUET's real-time
window (``realtime_window``, 10 by default), the generator reads exactly what the backbone reads; only a longer
history gives the window something of its own, its newest part, as in the paper. The users are split at
``--edges`` (default: the window), and each stratum gets the paired comparison the harness reports (mean
difference, 95% bootstrap CI over users resampled within each seed, paired t-test), over the seeds both models
have. Prints a markdown table and writes it as JSON.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from paired import compare_all  # noqa: E402
from per_user import per_user_runs  # noqa: E402
from report import selected_records  # noqa: E402

METRICS = ["ndcg@10", "recall@10"]
DEFAULT_WINDOW = 10  # DUET.yaml's realtime_window


def history_lengths(record, data_path):
    """Per internal user id, the number of interactions before the test one, in the dataset ``record`` ran on."""
    from recbole.data import create_dataset

    from recbole_duet.config import Config

    settings = {**record["config"], "data_path": data_path, "state": "WARNING"}
    config = Config(model=record["backbone"], dataset=record["dataset"], config_dict=settings)
    dataset = create_dataset(config)
    users = np.asarray(dataset.inter_feat[dataset.uid_field])
    return np.bincount(users, minlength=dataset.user_num) - 1


def strata(edges):
    """``[(name, low, high)]``: histories of ``low < length <= high`` items, from the sorted cut points ``edges``."""
    bounds = [0, *edges, np.inf]
    names = [f"{low + 1}-{high}" if high != np.inf else f"> {low}" for low, high in zip(bounds, bounds[1:])]
    return [(name, low, high) for name, low, high in zip(names, bounds, bounds[1:])]


def restricted(runs, keep):
    """The per-user arrays of every seed, restricted to the users for whom ``keep(user ids)`` is true."""
    result = {}
    for seed, arrays in runs.items():
        mask = keep(arrays["users"])
        result[seed] = {key: values[mask] for key, values in arrays.items()}
    return result


def split_comparisons(pairs, lengths, edges, metrics=METRICS):
    """Per pair of run sets ``(first_runs, second_runs)``, rows ``{stratum, users, metric, first, second,
    mean_difference, ci95, p_value, seeds}``, one per stratum and metric (``users``: the stratum's count per
    seed; ``first``/``second``: the two models' means there), over the seeds both run sets have. The strata of
    every pair are bootstrapped in one ``compare_all`` call: comparisons over the same users share its counts."""
    requests, tables = [], []
    for first_runs, second_runs in pairs:
        seeds = sorted(set(first_runs) & set(second_runs))
        rows = []
        for name, low, high in strata(edges):

            def keep(users, low=low, high=high):
                return (lengths[users] > low) & (lengths[users] <= high)

            first = restricted({seed: first_runs[seed] for seed in seeds}, keep)
            second = restricted({seed: second_runs[seed] for seed in seeds}, keep)
            users = len(first[seeds[0]]["users"]) if seeds else 0
            for metric in metrics if users else []:
                requests.append((first, second, metric))
                means = [float(np.concatenate([run[metric] for run in runs.values()]).mean()) for runs in (first, second)]
                rows.append({"stratum": name, "users": users, "metric": metric, "first": means[0], "second": means[1]})
        tables.append(rows)
    results = iter(compare_all(requests))
    for rows in tables:
        for row in rows:
            result = next(results)
            row.update({key: result[key] for key in ("mean_difference", "ci95", "p_value", "seeds")})
    return tables


def markdown(tables):
    lines = [
        "| first | second | history (items) | users per seed | metric | first | second | difference [95% CI], p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (first, second), rows in tables.items():
        for row in rows:
            low, high = row["ci95"]
            lines.append(
                f"| {first} | {second} | {row['stratum']} | {row['users']} | {row['metric']} | {row['first']:.4f} | "
                f"{row['second']:.4f} | {row['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}], p {row['p_value']:.2g} |"
            )
    return "\n".join(lines)


def parse_pairs(pairs, runs):
    """``FIRST:SECOND`` -> ``(first, second)``, both models with per-user metrics in the folder."""
    parsed = []
    for pair in pairs:
        first, separator, second = pair.partition(":")
        if not separator:
            raise SystemExit(f"--pairs: '{pair}' is not FIRST:SECOND")
        for model in (first, second):
            if model not in runs:
                raise SystemExit(f"--pairs: the folder has no per-user results of '{model}' (it has {sorted(runs)})")
        parsed.append((first, second))
    return parsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="a benchmarks/run.py --out folder")
    parser.add_argument("--data-path", required=True, help="the folder holding the dataset's atomic files")
    parser.add_argument("--pairs", nargs="+", required=True, help="FIRST:SECOND model names of the folder")
    parser.add_argument("--edges", nargs="+", type=int, default=None, help="history lengths to cut at (default: the window)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    with open(os.path.join(args.folder, "results.json"), encoding="utf-8") as file:
        records = selected_records(json.load(file))
    runs = per_user_runs(records, args.folder)
    pairs = parse_pairs(args.pairs, runs)
    edges = sorted(args.edges or [records[0]["config"].get("realtime_window", DEFAULT_WINDOW)])
    lengths = history_lengths(records[0], args.data_path)
    tables = dict(zip(pairs, split_comparisons([(runs[first], runs[second]) for first, second in pairs], lengths, edges)))
    with open(args.out, "w", encoding="utf-8") as file:
        summary = [{"first": first, "second": second, "rows": rows} for (first, second), rows in tables.items()]
        json.dump({"folder": args.folder, "edges": edges, "comparisons": summary}, file, indent=2)
    print(markdown(tables))


if __name__ == "__main__":
    main()
