"""Benchmark DUET against its backbones, on-device fine-tuning and any RecBole model, with one protocol.

    python benchmarks/run.py --suite quick --dataset ml-100k --seeds 3 \\
        --models SASRec DUET-SASRec Base-SASRec Finetune-SASRec GRU4Rec DUET-GRU4Rec Base-GRU4Rec Finetune-GRU4Rec \\
        --out benchmarks/results/ml-100k-quick

Model names: any RecBole model (trained as RecBole would); ``DUET-<backbone>`` (``model: DUET``);
``Base-<backbone>`` and ``Finetune-<backbone>``: the same trained DUET model scored with its global
(UMN) layers, or with each device fine-tuning them on its own window (``duet_inference: global`` /
``finetune``) -- one DUET training serves the three rows. Every model gets the same data, split
(LS valid_and_test, time-ordered), evaluation, budget and early stopping (on valid NDCG@10); DUET's best
checkpoint is chosen with its generated layers.

Results are appended to ``<out>/results.json`` after every (model, seed), so a stopped run resumes
without redoing finished pairs; ``results.md`` and two PNG plots are rewritten at the end.
"""

import argparse
import json
import os
import platform
import sys

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from adaptation import measure_adaptation  # noqa: E402
from report import ratio_lines, summary_table, write_plots  # noqa: E402

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
}
SUITES = {
    # quick: a higher learning rate than RecBole's 0.001 so that 5 epochs on a CPU get somewhere.
    "quick": {"MAX_ITEM_LIST_LENGTH": 10, "epochs": 5, "stopping_step": 2, "learning_rate": 0.005},
    "full": {"MAX_ITEM_LIST_LENGTH": 50, "epochs": 300, "stopping_step": 10},
}
FIRST_SEED = 2020
DUET_FAMILY = {"DUET": "generated", "Base": "global", "Finetune": "finetune"}


def split_name(name):
    """``'Finetune-SASRec'`` -> ``('Finetune', 'SASRec')``; a RecBole model name -> ``(None, name)``."""
    family, _, backbone = name.partition("-")
    return (family, backbone) if family in DUET_FAMILY and backbone else (None, name)


def plain(metrics):
    return {key: float(value) for key, value in metrics.items()}


def evaluate_as(trainer, data, inference):
    """Valid and test results of the trained DUET model scored with another ``duet_inference``."""
    trainer.model.inference = inference
    _, valid_data, test_data = data
    return plain(trainer.evaluate(valid_data, load_best_model=False)), plain(trainer.evaluate(test_data, load_best_model=False))


def train(model, overrides, seed, args):
    config_dict = {**PROTOCOL, **SUITES[args.suite], **args.overrides, **overrides, "seed": seed}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config(model=model, dataset=args.dataset, config_dict=config_dict)
    return config_dict, run_experiment(config, saved=True)


def record(name, backbone, seed, args, config_dict, run, valid, test):
    return {
        "dataset": args.dataset,
        "model": name,
        "backbone": backbone,
        "seed": seed,
        "suite": args.suite,
        "config": config_dict,
        "valid": valid,
        "test": test,
        "epochs": run["epochs"],
        "epoch_seconds": run["fit_seconds"] / max(run["epochs"], 1),
    }


def run_plain(name, seed, args):
    config_dict, run = train(name, {}, seed, args)
    result = run["result"]
    return [record(name, name, seed, args, config_dict, run, plain(result["best_valid_result"]), plain(result["test_result"]))]


def run_duet_family(backbone, members, seed, args):
    """Train DUET once; record the requested members among DUET-, Base- and Finetune-<backbone>."""
    config_dict, run = train("DUET", {"backbone": backbone}, seed, args)
    trainer = run["trainer"]
    adaptation = measure_adaptation(trainer.model, run["data"][2]._dataset.inter_feat)
    records = []
    for family in members:
        if family == "DUET":
            result = run["result"]
            valid, test = plain(result["best_valid_result"]), plain(result["test_result"])
        else:
            valid, test = evaluate_as(trainer, run["data"], DUET_FAMILY[family])
        entry = record(f"{family}-{backbone}", backbone, seed, args, config_dict, run, valid, test)
        if family != "Base":
            entry["adaptation"] = adaptation
        records.append(entry)
    return records


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


def pending_jobs(models, seeds, dataset, records):
    """(job, seed) pairs still to run: one job per plain model, one per DUET backbone family."""
    done = {(r["dataset"], r["model"], r["seed"]) for r in records}
    jobs = []
    for seed in seeds:
        families = {}
        for name in models:
            family, backbone = split_name(name)
            if (dataset, name, seed) in done:
                continue
            if family is None:
                jobs.append((("plain", name, None), seed))
            else:
                families.setdefault(backbone, []).append(family)
        jobs += [(("duet", backbone, tuple(members)), seed) for backbone, members in families.items()]
    return jobs


def plots_available():
    """Whether matplotlib (the ``bench`` extra) imports: checked before the first model trains, not after the last."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "warning: matplotlib is not installed (pip install 'recbole-duet[bench]'): results.json and results.md "
            "will be written, the plots skipped",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


def write_report(records, args, plots=True):
    table = summary_table(records, args.models)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    settings = {**PROTOCOL, **SUITES[args.suite], **args.overrides}
    lines = [
        f"# {args.dataset}, suite '{args.suite}'",
        "",
        f"Machine: {machine}. Seeds: {sorted({r['seed'] for r in records})}.",
        "",
        f"Settings on top of RecBole's and each model's defaults: `{json.dumps(settings)}`",
        "",
        table,
        "",
        "Side-by-side ratios (same seed, same run):",
        "",
        *ratio_lines(records),
        "",
    ]
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines))
    if plots:
        write_plots(records, args.models, args.out)
    print(table)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["SASRec", "DUET-SASRec", "GRU4Rec", "DUET-GRU4Rec"])
    parser.add_argument("--config-files", nargs="*", default=[], help="yaml overrides applied to every model")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.overrides = {}
    for path in args.config_files:
        with open(path, encoding="utf-8") as file:
            args.overrides.update(yaml.safe_load(file) or {})
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    return args


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    records = load_records(results_path)
    seeds = [FIRST_SEED + i for i in range(args.seeds)]
    jobs = pending_jobs(args.models, seeds, args.dataset, records)
    plots = plots_available()
    print(f"{len(jobs)} training runs to do, results in {results_path}", flush=True)
    for position, ((kind, name, members), seed) in enumerate(jobs, start=1):
        label = name if kind == "plain" else "/".join(f"{m}-{name}" for m in members)
        print(f"[{position}/{len(jobs)}] {label}, seed {seed}", flush=True)
        new = run_plain(name, seed, args) if kind == "plain" else run_duet_family(name, members, seed, args)
        records += new
        write_json_atomically(results_path, records)
    write_report(records, args, plots)


if __name__ == "__main__":
    main()
