"""results.md (mean +- std over seeds, paired comparisons with bootstrap CIs) and the PNG plots of a run."""

import statistics

import numpy as np

from benchmarks.paired import compare_all, interval, user_clusters
from benchmarks.per_user import per_user_runs

# gauc, auc and logloss: a sampled evaluation's pointwise metrics (benchmarks/per_user.py), logloss for DIN only
REPORTED_METRICS = ["ndcg@10", "recall@10", "mrr@10", "hit@10", "gauc", "auc", "logloss"]
RANKING_PAIRED_METRICS = ["ndcg@10", "recall@10"]  # every evaluation has these
PAIRED_METRICS = RANKING_PAIRED_METRICS + ["gauc", "logloss"]
COMPARATORS = ["{backbone}", "Base-{backbone}", "Layers-{backbone}", "Finetune-{backbone}", "FinetuneAll-{backbone}"]


def _decider(record):
    """The model whose validation chooses this record's learning rate: the family's trained model (its
    ``training``). Records from before fine-tuning moved to the Layers family have no ``training`` field; their
    Finetune rows tuned DUET's training."""
    if "training" in record:
        return record["training"]
    family, _, backbone = record["model"].partition("-")
    return f"DUET-{backbone}" if family in ("DUET", "Base", "Finetune", "FinetuneAll") and backbone else record["model"]


def selected_records(records):
    """One record per (dataset, model, seed): where a learning-rate grid ran, the rate chosen on validation."""
    best_rate = {}
    for record in records:
        key = (record["dataset"], record["model"], record["seed"])
        score = record["valid"].get("ndcg@10", 0.0)
        if key not in best_rate or score > best_rate[key][0]:
            best_rate[key] = (score, record.get("learning_rate"))
    chosen = []
    for record in records:
        decider = best_rate.get((record["dataset"], _decider(record), record["seed"]))
        if decider is None or record.get("learning_rate") == decider[1]:
            chosen.append(record)
    return chosen


def paired_comparisons(records, folder):
    """DUET-X against each comparator of X, per metric, from the per-user files (records without are skipped)."""
    runs = per_user_runs(records, folder)
    pairs = []
    for model in sorted(runs):
        if not model.startswith("DUET-"):
            continue
        backbone = model[len("DUET-") :]
        metrics = [m for m in PAIRED_METRICS if all(m in arrays for arrays in runs[model].values())]
        pairs += [(model, pattern.format(backbone=backbone), metric) for pattern in COMPARATORS for metric in metrics]
    results = compare_all([(runs[first], runs.get(second, {}), metric) for first, second, metric in pairs])
    return [
        {"first": first, "second": second, **result}
        for (first, second, _), result in zip(pairs, results)
        if result is not None
    ]


def paired_lines(comparisons):
    """The markdown section of ``paired_comparisons`` (empty when no record kept per-user metrics). Where a user has
    several test cases (a time split) the per-user mean difference and its CI follow the per-case ones."""
    if not comparisons:
        return []
    clustered = any(c["cases"] > c["users"] for c in comparisons)
    per_user = " | per-user mean difference | 95% CI" if clustered else ""
    lines = [
        "Paired comparisons over the same test cases (difference = first - second; 95% bootstrap CI with users, each "
        "with all of its cases, resampled within each seed, pooled over seeds; p from the paired t-test over users' "
        "mean differences; ratio of means per seed"
        + ("; per case, then per user, each user weighing the same" if clustered else "")
        + ("; lower logloss is better" if any(c["metric"] == "logloss" for c in comparisons) else "")
        + "):",
        "",
        f"| first | second | metric | mean difference | 95% CI{per_user} | p | per-seed ratios |",
        "|---|---|---|---|---|---|---|" + ("---|---|" if clustered else ""),
    ]
    for c in comparisons:
        ratios = ", ".join(f"{seed}: {ratio:.3f}" for seed, ratio in zip(c["seeds"], c["ratios"]))
        user_columns = ""
        if clustered:
            user_columns = f" | {c['per_user_mean_difference']:+.4f} | {interval(c['per_user_ci95'])}"
        lines.append(
            f"| {c['first']} | {c['second']} | {c['metric']} | {c['mean_difference']:+.4f} | "
            f"{interval(c['ci95'])}{user_columns} | {c['p_value']:.2g} | {ratios} |"
        )
    return lines + [""]


def per_user_mean_lines(records, folder):
    """Where a user has several test cases (a time split): each model's metrics averaged per user first, every
    user weighing the same, beside the per-case means of the main table (mean over seeds). Empty otherwise."""
    runs = per_user_runs(records, folder)
    if not any(len(arrays["users"]) > len(np.unique(arrays["users"])) for seeds in runs.values() for arrays in seeds.values()):
        return []
    lines = [
        "Per-user means (each user's cases averaged first; mean over seeds):",
        "",
        "| model | users | cases | test ndcg@10 per case | per user | test recall@10 per case | per user |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, seeds in runs.items():
        cells = []
        for metric in RANKING_PAIRED_METRICS:
            per_case = np.mean([arrays[metric].mean() for arrays in seeds.values()])
            per_user = []
            for arrays in seeds.values():
                sums, counts = user_clusters(arrays["users"], arrays[metric].astype(np.float64)[:, None])
                per_user.append((sums[:, 0] / counts).mean())
            cells += [f"{per_case:.4f}", f"{np.mean(per_user):.4f}"]
        some = next(iter(seeds.values()))
        lines.append(f"| {model} | {len(np.unique(some['users']))} | {len(some['users'])} | " + " | ".join(cells) + " |")
    return lines + [""]


def mean_std(values):
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def reported_models(records, requested):
    """The requested models, then every other model in ``records``: processes with different ``--models`` share a
    results folder, and whichever writes the report last must not drop the others' rows."""
    models = list(requested)
    models += [name for name in dict.fromkeys(r["model"] for r in records) if name not in models]
    return models


def _by_model(records, models):
    grouped = {name: [r for r in records if r["model"] == name] for name in models}
    return {name: rows for name, rows in grouped.items() if rows}


def _cell(rows, read, pattern="%.4f ± %.4f"):
    values = [read(row) for row in rows]
    return pattern % mean_std(values) if all(v is not None for v in values) else "–"


UNRECORDED_MACHINE = "x86_64, 2 cores (not recorded)"  # records written before machines were kept ran there


def machine(record):
    """The machine a record's training ran on."""
    return record.get("machine", UNRECORDED_MACHINE)


def machines_line(records):
    """The machines behind ``records``, with how many runs each."""
    counts = {}
    for record in records:
        counts[machine(record)] = counts.get(machine(record), 0) + 1
    return "; ".join(f"{count} run{'s' * (count != 1)} on {name}" for name, count in sorted(counts.items()))


def _timing_cell(rows, read, pattern):
    """Like ``_cell``, for seconds: only averaged over runs of one machine (a CPU's and a GPU's do not mix)."""
    n_machines = len({machine(row) for row in rows})
    return _cell(rows, read, pattern) if n_machines == 1 else f"– ({n_machines} machines)"


def payload_kib(record):
    """What a device downloads with DUET (its generated layers), in KiB; None for a model that sends none."""
    payload = (record.get("adaptation") or {}).get("payload_bytes")
    return None if payload is None else payload / 1024


def summary_table(records, models):
    """One row per model: test metrics, valid NDCG@10, epochs, seconds per epoch, adaptation costs."""
    metrics = [m for m in REPORTED_METRICS if all(m in r["test"] for r in records)]
    header = ["model", "seeds"] + [f"test {m}" for m in metrics]
    header += ["valid ndcg@10", "epochs", "s/epoch", "wall s", "adapt ms/device", "payload KiB"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, rows in _by_model(records, models).items():
        cells = [name, str(len(rows))] + [_cell(rows, lambda r, m=m: r["test"][m]) for m in metrics]
        cells.append(_cell(rows, lambda r: r["valid"].get("ndcg@10")))
        cells.append(_cell(rows, lambda r: r["epochs"], "%.1f ± %.1f"))
        cells.append(_timing_cell(rows, lambda r: r["epoch_seconds"], "%.1f ± %.1f"))
        cells.append(_timing_cell(rows, lambda r: r.get("wall_seconds"), "%.0f ± %.0f"))
        cells.append(_timing_cell(rows, lambda r: adaptation_ms(r), "%.3g ± %.2g"))
        cells.append(_cell(rows, payload_kib, "%.1f ± %.1f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def epoch_cap_line(records):
    """How many trainings ran into the epoch cap instead of stopping early (family members share a training; the
    two stages of a ``training_order: cloud_first`` training count apart)."""
    trainings = {(r["dataset"], _decider(r), r["seed"], r.get("learning_rate")): r for r in records}
    stages = list(trainings.values()) + [r["cloud_stage"] for r in trainings.values() if "cloud_stage" in r]
    capped = sum(not stage["stopped_early"] for stage in stages)
    return f"Trainings that hit the epoch cap instead of stopping early: {capped} of {len(stages)}."


def adaptation_ms(record):
    """A device's wait: generation p50 for DUET, tuning time for Finetune, tuning and scoring time for
    FinetuneAll (its test pass per user), nothing for the others."""
    if record["model"].startswith("FinetuneAll-"):
        return record.get("test_ms_per_user")
    adaptation = record.get("adaptation")
    if adaptation is None:
        return None
    return adaptation["finetune_ms_per_device"] if record["model"].startswith("Finetune-") else adaptation["generation_ms_p50"]


def finetune_ms_beside(duet, records):
    """A device's fine-tuning time beside ``duet``'s generation: the ``Finetune-<backbone>`` record of its seed (records
    written while fine-tuning was DUET's ``duet_inference: finetune`` also kept it on DUET's own), or None."""
    backbone = duet["model"][len("DUET-") :]
    for record in records:
        if (record["model"], record["seed"]) == (f"Finetune-{backbone}", duet["seed"]) and record.get("adaptation"):
            return record["adaptation"]["finetune_ms_per_device"]
    return (duet.get("adaptation") or {}).get("finetune_ms_per_device")


def ratio_lines(records):
    """Ratios measured side by side (same seed, same run): DUET vs its backbone, fine-tune vs DUET. The epoch-time
    ratio needs both trainings on one machine."""
    lines = []
    for duet in (r for r in records if r["model"].startswith("DUET-")):
        backbone = duet["model"][len("DUET-") :]
        for base in (r for r in records if r["model"] == backbone and r["seed"] == duet["seed"]):
            same_machine = machine(duet) == machine(base)
            epoch_time = f"{duet['epoch_seconds'] / base['epoch_seconds']:.2f}" if same_machine else "– (two machines)"
            finetune_ms = finetune_ms_beside(duet, records)
            tuning = "–" if finetune_ms is None else f"{finetune_ms / duet['adaptation']['generation_ms_p50']:.2g}"
            lines.append(
                f"- seed {duet['seed']}, {backbone}: NDCG@10 DUET/backbone = "
                f"{duet['test']['ndcg@10'] / max(base['test']['ndcg@10'], 1e-12):.3f}, "
                f"epoch time DUET/backbone = {epoch_time}, fine-tune/generation time = {tuning}"
            )
    return lines


def write_plots(records, models, folder, comparisons):
    """``metrics.png``: NDCG@10 and Recall@10 with error bars; ``accuracy_vs_time.png``: NDCG@10 against a
    device's adaptation time (log scale), in the spirit of the paper's Fig. 1(d); ``paired_ci.png``: DUET's
    paired NDCG@10 difference to each comparator with its 95% bootstrap CI (``comparisons``, from
    ``paired_comparisons``: none without per-user metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = _by_model(records, models)
    names = list(grouped)
    figure, axis = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4))
    width = 0.4
    for offset, metric in ((-width / 2, "ndcg@10"), (width / 2, "recall@10")):
        stats = [mean_std(r["test"][metric] for r in grouped[n]) for n in names]
        axis.bar([i + offset for i in range(len(names))], [m for m, _ in stats], width, yerr=[s for _, s in stats], capsize=3, label=metric)
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names, rotation=30, ha="right")
    axis.set_ylabel("test metric (mean ± std over seeds)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(f"{folder}/metrics.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, rows in grouped.items():
        times = [adaptation_ms(r) for r in rows]
        if None in times:
            continue
        accuracy, spread = mean_std(r["test"]["ndcg@10"] for r in rows)
        axis.errorbar([statistics.mean(times)], [accuracy], yerr=[spread], fmt="o", capsize=3, label=name)
    axis.set_xscale("log")
    axis.set_xlabel("adaptation time per device (ms, log scale)")
    axis.set_ylabel("test NDCG@10")
    axis.legend()
    figure.tight_layout()
    figure.savefig(f"{folder}/accuracy_vs_time.png", dpi=120)
    plt.close(figure)

    comparisons = [c for c in comparisons if c["metric"] == "ndcg@10"]
    if not comparisons:
        return
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(comparisons) + 1.5))
    for row, c in enumerate(comparisons):
        low, high = c["ci95"]
        axis.errorbar([c["mean_difference"]], [row], xerr=[[c["mean_difference"] - low], [high - c["mean_difference"]]], fmt="o", capsize=4)
    axis.axvline(0.0, color="grey", linewidth=1)
    axis.set_yticks(range(len(comparisons)))
    axis.set_yticklabels([f"{c['first']} - {c['second']}" for c in comparisons])
    axis.set_xlabel("test NDCG@10 difference, paired over users (95% bootstrap CI)")
    figure.tight_layout()
    figure.savefig(f"{folder}/paired_ci.png", dpi=120)
    plt.close(figure)
