"""Which test cases a difference comes from: a suite's paired comparisons split by the length of each test case's
history and, under a time split, by whether its user is new.

    python -m benchmarks.by_history --folder benchmarks/results/beauty-seq-standard --data-path ../shared/data \\
        --pairs DUET-SASRec:SASRec DUET-SASRec:Layers-SASRec DUET-GRU4Rec:GRU4Rec DUET-GRU4Rec:Layers-GRU4Rec \\
        --out benchmarks/results/beauty-seq-standard/by-history.json

A test case's history is every interaction of its user before it (under leave-one-out: all but the test one).
When it holds no more items than DUET's real-time window (``realtime_window``, 10 by default), the generator
reads exactly what the backbone reads; only a longer history gives the window something of its own, its newest
part, as in the paper. The cases are split at ``--edges`` (default: the window). Under a time split a user is
*new* when none of their interactions came before the time boundary (the cloud model never saw them), else
*returning*; those two strata are added. Each stratum gets the paired comparison the harness reports (mean
difference, 95% bootstrap CI over users resampled whole within each seed, paired t-test over users), over the
seeds both models have. Prints a markdown table and writes it as JSON (``--out``) and markdown (same name, ``.md``).
"""

import argparse
import json
import os
import sys

import numpy as np

from benchmarks.paired import compare_all, interval
from benchmarks.per_user import per_user_runs
from benchmarks.report import selected_records

METRICS = ["ndcg@10", "recall@10"]
DEFAULT_WINDOW = 10  # DUET.yaml's realtime_window


def case_histories(record, data_path, users):
    """Per test case of ``record``'s split (in evaluation order, whose user ids ``users`` are checked): how many
    interactions its user had before it, and whether its user had any before the time boundary (always, under
    leave-one-out). Under a time split with a sampled evaluation (``uni100``) RecBole scores all of a user's test
    cases together, so the per-case file holds a row per user (in user-id order): then a row's history is what its
    user had before their first test case."""
    from recbole.data import create_dataset

    from recbole_duet.config import Config

    settings = {**record["config"], "data_path": data_path, "state": "WARNING"}
    config = Config(model=record["backbone"], dataset=record["dataset"], config_dict=settings)
    dataset = create_dataset(config)
    raw_users = np.asarray(dataset.inter_feat[dataset.uid_field])
    if "TS" not in config["eval_args"]["split"]:  # leave-one-out: each user's last interaction is its one case
        lengths = np.bincount(raw_users, minlength=dataset.user_num) - 1
        return lengths[users], np.ones(len(users), dtype=bool)
    raw_times = np.asarray(dataset.inter_feat[dataset.time_field])
    test = dataset.build()[2].inter_feat
    case_users, case_times = test[dataset.uid_field].numpy(), test[dataset.time_field].numpy()
    row_per_user = not np.array_equal(case_users, users) and np.array_equal(np.unique(case_users), users)
    if not (row_per_user or np.array_equal(case_users, users)):
        raise ValueError(f"{record['model']}: the per-case file's users are not the rebuilt split's test cases")
    times_of = {user: np.sort(raw_times[raw_users == user]) for user in np.unique(case_users)}
    history = np.array([np.searchsorted(times_of[u], t) for u, t in zip(case_users, case_times)])
    # Interactions at the case's own time (a day's reviews) are not counted by time, but RecBole's history holds
    # those it ordered first; its length, capped at MAX_ITEM_LIST_LENGTH, is exact below the cap.
    history = np.maximum(history, test[dataset.item_list_length_field].numpy())
    returning = np.array([times_of[u][0] < case_times.min() for u in case_users])
    if not row_per_user:
        return history, returning
    order = np.argsort(case_users, kind="stable")
    firsts = np.flatnonzero(np.r_[True, np.diff(case_users[order]) != 0])  # where each user's cases start
    return np.minimum.reduceat(history[order], firsts), returning[order][firsts]


def strata(edges):
    """``[(name, low, high)]``: histories of ``low < length <= high`` items, from the sorted cut points ``edges``."""
    bounds = [0, *edges, np.inf]
    names = [f"{low + 1}-{high}" if high != np.inf else f"> {low}" for low, high in zip(bounds, bounds[1:])]
    return [(name, low, high) for name, low, high in zip(names, bounds, bounds[1:])]


def restricted(runs, mask):
    """The per-case arrays of every seed, restricted to the cases where ``mask`` is true."""
    return {seed: {key: values[mask] for key, values in arrays.items()} for seed, arrays in runs.items()}


def case_strata(history_length, returning, edges):
    """``[(name, mask)]`` over the cases: by history length, then new and returning users when both are there."""
    masks = [(name, (history_length > low) & (history_length <= high)) for name, low, high in strata(edges)]
    if returning is not None and returning.any() and not returning.all():
        masks += [("new users", ~returning), ("returning users", returning)]
    return masks


def split_comparisons(pairs, history_length, edges, metrics=METRICS, returning=None):
    """Per pair of run sets ``(first_runs, second_runs)``, rows ``{stratum, users, cases, metric, first, second,
    mean_difference, ci95, per_user_mean_difference, per_user_ci95, p_value, seeds}``, one per stratum and metric
    (``users``/``cases``: the stratum's counts per seed; ``first``/``second``: the two models' means there), over
    the seeds both run sets have. ``history_length`` and ``returning`` hold one value per case, in the runs' row
    order. The strata of every pair are bootstrapped in one ``compare_all`` call: comparisons over the same users
    share its counts."""
    requests, tables = [], []
    for first_runs, second_runs in pairs:
        seeds = sorted(set(first_runs) & set(second_runs))
        rows = []
        for name, mask in case_strata(history_length, returning, edges):
            first = restricted({seed: first_runs[seed] for seed in seeds}, mask)
            second = restricted({seed: second_runs[seed] for seed in seeds}, mask)
            cases = int(mask.sum()) if seeds else 0
            users = len(np.unique(first[seeds[0]]["users"])) if cases else 0
            for metric in metrics if cases else []:
                requests.append((first, second, metric))
                means = [float(np.concatenate([run[metric] for run in runs.values()]).mean()) for runs in (first, second)]
                row = {"stratum": name, "users": users, "cases": cases, "metric": metric}
                rows.append({**row, "first": means[0], "second": means[1]})
        tables.append(rows)
    results = iter(compare_all(requests))
    keys = ("mean_difference", "ci95", "per_user_mean_difference", "per_user_ci95", "p_value", "seeds")
    for rows in tables:
        for row in rows:
            result = next(results)
            row.update({key: result[key] for key in keys})
    return tables


def markdown(tables):
    """The strata as a table: per-case difference and CI, then per user (each user weighing the same) with the
    p-value of the paired t-test over users, which goes with the per-user figure."""
    lines = [
        "| first | second | cases | users per seed | cases per seed | metric | first | second | difference [95% CI] "
        "| per user [95% CI], p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (first, second), rows in tables.items():
        for row in rows:
            lines.append(
                f"| {first} | {second} | {row['stratum']} | {row['users']} | {row['cases']} | {row['metric']} | "
                f"{row['first']:.4f} | {row['second']:.4f} | {row['mean_difference']:+.4f} {interval(row['ci95'])} | "
                f"{row['per_user_mean_difference']:+.4f} {interval(row['per_user_ci95'])}, p {row['p_value']:.2g} |"
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


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="a benchmarks/run.py --out folder")
    parser.add_argument("--data-path", required=True, help="the folder holding the dataset's atomic files")
    parser.add_argument("--pairs", nargs="+", required=True, help="FIRST:SECOND model names of the folder")
    parser.add_argument("--edges", nargs="+", type=int, default=None, help="history lengths to cut at (default: the window)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    return parser


def main():
    args = build_parser().parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    with open(os.path.join(args.folder, "results.json"), encoding="utf-8") as file:
        records = selected_records(json.load(file))
    runs = per_user_runs(records, args.folder)
    pairs = parse_pairs(args.pairs, runs)
    edges = sorted(args.edges or [records[0]["config"].get("realtime_window", DEFAULT_WINDOW)])
    some_run = next(iter(runs[pairs[0][0]].values()))
    lengths, returning = case_histories(records[0], args.data_path, some_run["users"])
    run_pairs = [(runs[first], runs[second]) for first, second in pairs]
    tables = dict(zip(pairs, split_comparisons(run_pairs, lengths, edges, returning=returning)))
    with open(args.out, "w", encoding="utf-8") as file:
        summary = [{"first": first, "second": second, "rows": rows} for (first, second), rows in tables.items()]
        json.dump({"folder": args.folder, "edges": edges, "comparisons": summary}, file, indent=2)
    with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as file:
        file.write(markdown(tables) + "\n")
    print(markdown(tables))


if __name__ == "__main__":
    main()
