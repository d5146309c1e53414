"""How fast generated parameters go stale: each trained DUET of a results folder scored with the parameters a
device would hold ``k`` interactions after its last request (``duet_param_age: k``), against ``k = 0``.

    python -m benchmarks.param_age --folder benchmarks/results/time-split-beauty-time --data-path ../shared/data

For every DUET record of the folder (at the learning rate chosen on validation) whose model the harness kept
(``<folder>/models/``), the test cases are scored at each age in ``--ages`` and with the global layers alone (no
request ever made), each case's metrics kept per case. Paired against ``k = 0`` over the same cases, pooled over
seeds with users resampled whole (:mod:`paired`), the curve says how long a device may keep its parameters.
Output: ``<folder>/param_age.json`` and ``param_age.md``; the per-case arrays go to ``<folder>/per_user/``.
"""

import argparse
import math
import os
import sys

from benchmarks.kept_models import load_kept_model, model_file, trained_duet_records
from benchmarks.paired import compare_all, interval
from benchmarks.per_user import evaluate_per_user, load_per_user, save_per_user
from benchmarks.run import write_json_atomically
from recbole_duet.training.allocator import keep_freed_memory
from recbole_duet.training.trainer import get_trainer

DEFAULT_AGES = [0, 1, 2, 5, 10]
GLOBAL = "global"  # the global layers: a device that never requested
METRICS = ["ndcg@10", "recall@10"]


def score_at_ages(record, folder, ages, data_path):
    """Per-case test metrics of one trained DUET at each age and with its global layers: ``setting -> arrays``.
    Settings scored before (their per-case file exists) are read back, not scored again."""
    label = os.path.basename(model_file(folder, record))[: -len(".pth")]
    files = {setting: os.path.join("per_user", f"{label}-age-{setting}.npz") for setting in [*ages, GLOBAL]}
    runs = {s: load_per_user(folder, {"per_user_file": f}) for s, f in files.items() if os.path.isfile(os.path.join(folder, f))}
    if len(runs) == len(files):
        return runs
    config, model, (_, _, test_data) = load_kept_model(record, folder, data_path)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    for setting in files:
        if setting in runs:
            continue
        model.inference = "global" if setting == GLOBAL else "generated"
        model.param_age = 0 if setting == GLOBAL else setting
        _, per_user = evaluate_per_user(trainer, test_data)
        save_per_user(folder, f"{label}-age-{setting}", per_user)
        runs[setting] = per_user
    return runs


def age_curve(folder, ages, data_path):
    """Rows ``{model, setting, metric, mean, difference to k=0, ci95, per-user difference, per_user_ci95, p}``."""
    by_model = {}
    for record in trained_duet_records(folder):
        by_model.setdefault(record["model"], {})[record["seed"]] = score_at_ages(record, folder, ages, data_path)
    requests, keys = [], []
    for model, seeds in sorted(by_model.items()):
        for setting in [*ages, GLOBAL]:
            for metric in METRICS:
                at_setting = {seed: runs[setting] for seed, runs in seeds.items()}
                fresh = {seed: runs[0] for seed, runs in seeds.items()}
                requests.append((at_setting, fresh, metric))
                keys.append((model, setting, metric, at_setting))
    rows = []
    for (model, setting, metric, at_setting), result in zip(keys, compare_all(requests)):
        cases = sum(len(runs[metric]) for runs in at_setting.values())
        mean = sum(float(runs[metric].sum()) for runs in at_setting.values()) / cases
        rows.append(
            {
                "model": model, "setting": setting, "metric": metric, "seeds": result["seeds"], "mean": mean,
                "difference": result["mean_difference"], "ci95": result["ci95"],
                "per_user_difference": result["per_user_mean_difference"], "per_user_ci95": result["per_user_ci95"],
                "p_value": None if math.isnan(result["p_value"]) else result["p_value"],  # k = 0 against itself
                "users": result["users"], "cases": result["cases"],
            }
        )
    return rows


def markdown(rows, folder):
    lines = [
        f"# Parameter age, {folder}",
        "",
        "Each trained DUET scored with the parameters a device would hold k interactions after its last request "
        "(`duet_param_age: k`; `global`: the global layers, no request). Difference to k = 0 over the same test "
        "cases, 95% bootstrap CI with users resampled whole within each seed (per case, then per user).",
        "",
        "| model | k | metric | mean | - k=0 | 95% CI | per user | 95% CI | p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['setting']} | {row['metric']} | {row['mean']:.4f} | {row['difference']:+.4f} | "
            f"{interval(row['ci95'])} | {row['per_user_difference']:+.4f} | {interval(row['per_user_ci95'])} | "
            f"{'–' if row['p_value'] is None else format(row['p_value'], '.2g')} |"
        )
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="a harness results folder with kept models")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--ages", nargs="+", type=int, default=DEFAULT_AGES)
    return parser


def main():
    args = build_parser().parse_args()
    if 0 not in args.ages:
        sys.exit("--ages must include 0, the age every other is compared with")
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    keep_freed_memory()
    rows = age_curve(args.folder, args.ages, args.data_path)
    write_json_atomically(os.path.join(args.folder, "param_age.json"), rows)
    with open(os.path.join(args.folder, "param_age.md"), "w", encoding="utf-8") as file:
        file.write(markdown(rows, args.folder))
    print(markdown(rows, args.folder))


if __name__ == "__main__":
    main()
