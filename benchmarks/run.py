"""Benchmark DUET against its backbones (and any RecBole model) with one protocol.

    python benchmarks/run.py --suite quick --dataset ml-100k --seeds 1 \\
        --models SASRec DUET-SASRec GRU4Rec DUET-GRU4Rec --out benchmarks/results/ml-100k-quick

Every model gets the same data, split (LS valid_and_test, time-ordered), full-sort evaluation, budget and
early stopping (on valid NDCG@10). ``DUET-<backbone>`` means ``model: DUET, backbone: <backbone>``; any other
name is a RecBole model. Results are appended to ``<out>/results.json`` after each (model, seed) run, so an
interrupted benchmark resumes where it stopped; ``<out>/results.md`` holds mean +- std over seeds.
"""

import argparse
import json
import os
import platform
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_duet.config import Config  # noqa: E402
from recbole_duet.quick_start import run_experiment  # noqa: E402

PROTOCOL = {
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
    "metrics": ["Recall", "MRR", "NDCG", "Hit"],
    "topk": [10],
    "valid_metric": "NDCG@10",
    "train_batch_size": 2048,
    "eval_batch_size": 4096,
    "show_progress": False,
    "loss_type": "CE",
}
SUITES = {
    "quick": {"MAX_ITEM_LIST_LENGTH": 20, "epochs": 20, "stopping_step": 3},
    "full": {"MAX_ITEM_LIST_LENGTH": 50, "epochs": 200, "stopping_step": 10},
}
FIRST_SEED = 2020
REPORTED_METRICS = ["ndcg@10", "recall@10", "mrr@10", "hit@10"]


def model_settings(name):
    """``DUET-<backbone>`` -> (DUET, {'backbone': ...}); anything else is a RecBole model name."""
    if name.startswith("DUET-"):
        return "DUET", {"backbone": name[len("DUET-") :]}
    return name, {}


def plain(metrics):
    return {key: float(value) for key, value in metrics.items()}


def run_one(name, seed, args):
    model, model_overrides = model_settings(name)
    config_dict = {**PROTOCOL, **SUITES[args.suite], **model_overrides, "seed": seed}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config(model=model, dataset=args.dataset, config_dict=config_dict)
    run = run_experiment(config, saved=True)
    return {
        "dataset": args.dataset,
        "model": name,
        "backbone": model_overrides.get("backbone", model),
        "seed": seed,
        "suite": args.suite,
        "config": config_dict,
        "valid": plain(run["result"]["best_valid_result"]),
        "test": plain(run["result"]["test_result"]),
        "epochs": run["epochs"],
        "epoch_seconds": run["fit_seconds"] / max(run["epochs"], 1),
    }


def load_records(path):
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def write_json_atomically(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
    os.replace(temporary, path)


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary_table(records, models):
    lines = [
        "| model | seeds | " + " | ".join(f"test {m}" for m in REPORTED_METRICS) + " | valid ndcg@10 | epochs | s/epoch |",
        "|---" * (len(REPORTED_METRICS) + 5) + "|",
    ]
    for name in models:
        rows = [record for record in records if record["model"] == name]
        if not rows:
            continue
        cells = ["%.4f ± %.4f" % mean_std([row["test"][m] for row in rows]) for m in REPORTED_METRICS]
        valid = "%.4f ± %.4f" % mean_std([row["valid"]["ndcg@10"] for row in rows])
        epochs = "%.1f" % statistics.mean(row["epochs"] for row in rows)
        seconds = "%.1f" % statistics.mean(row["epoch_seconds"] for row in rows)
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + f" | {valid} | {epochs} | {seconds} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["SASRec", "DUET-SASRec", "GRU4Rec", "DUET-GRU4Rec"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides

    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    records = load_records(results_path)
    pending = [(name, FIRST_SEED + i) for i in range(args.seeds) for name in args.models]
    for position, (name, seed) in enumerate(pending, start=1):
        if any(r["model"] == name and r["seed"] == seed and r["dataset"] == args.dataset for r in records):
            print(f"[{position}/{len(pending)}] {name} seed {seed}: already in {results_path}, skipped")
            continue
        print(f"[{position}/{len(pending)}] {name} seed {seed}: running", flush=True)
        records.append(run_one(name, seed, args))
        write_json_atomically(results_path, records)

    table = summary_table(records, args.models)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    header = f"# {args.dataset}, suite '{args.suite}'\n\nMachine: {machine}\n\nProtocol: {json.dumps({**PROTOCOL, **SUITES[args.suite]})}\n\n"
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as file:
        file.write(header + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
