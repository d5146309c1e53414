"""results.md (mean +- std over seeds) and the two PNG plots of a benchmark run."""

import statistics

REPORTED_METRICS = ["ndcg@10", "recall@10", "mrr@10", "hit@10"]


def mean_std(values):
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _by_model(records, models):
    grouped = {name: [r for r in records if r["model"] == name] for name in models}
    return {name: rows for name, rows in grouped.items() if rows}


def _cell(rows, read, pattern="%.4f ± %.4f"):
    values = [read(row) for row in rows]
    return pattern % mean_std(values) if all(v is not None for v in values) else "–"


def summary_table(records, models):
    """One row per model: test metrics, valid NDCG@10, epochs, seconds per epoch, adaptation costs."""
    metrics = [m for m in REPORTED_METRICS if all(m in r["test"] for r in records)]
    header = ["model", "seeds"] + [f"test {m}" for m in metrics]
    header += ["valid ndcg@10", "epochs", "s/epoch", "adapt ms/device", "payload KiB"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, rows in _by_model(records, models).items():
        cells = [name, str(len(rows))] + [_cell(rows, lambda r, m=m: r["test"][m]) for m in metrics]
        cells.append(_cell(rows, lambda r: r["valid"].get("ndcg@10")))
        cells.append(_cell(rows, lambda r: r["epochs"], "%.1f ± %.1f"))
        cells.append(_cell(rows, lambda r: r["epoch_seconds"], "%.1f ± %.1f"))
        cells.append(_cell(rows, lambda r: adaptation_ms(r), "%.3g ± %.2g"))
        cells.append(_cell(rows, lambda r: r["adaptation"]["payload_bytes"] / 1024 if "adaptation" in r else None, "%.1f ± %.1f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def adaptation_ms(record):
    """A device's wait: generation p50 for DUET, tuning time for Finetune, nothing for the others."""
    adaptation = record.get("adaptation")
    if adaptation is None:
        return None
    return adaptation["finetune_ms_per_device"] if record["model"].startswith("Finetune-") else adaptation["generation_ms_p50"]


def ratio_lines(records):
    """Ratios measured side by side (same seed, same run): DUET vs its backbone, fine-tune vs DUET."""
    lines = []
    for duet in (r for r in records if r["model"].startswith("DUET-")):
        backbone = duet["model"][len("DUET-") :]
        for base in (r for r in records if r["model"] == backbone and r["seed"] == duet["seed"]):
            lines.append(
                f"- seed {duet['seed']}, {backbone}: NDCG@10 DUET/backbone = "
                f"{duet['test']['ndcg@10'] / max(base['test']['ndcg@10'], 1e-12):.3f}, "
                f"epoch time DUET/backbone = {duet['epoch_seconds'] / base['epoch_seconds']:.2f}, "
                f"fine-tune/generation time = "
                f"{duet['adaptation']['finetune_ms_per_device'] / duet['adaptation']['generation_ms_p50']:.0f}"
            )
    return lines


def write_plots(records, models, folder):
    """``metrics.png``: NDCG@10 and Recall@10 with error bars; ``accuracy_vs_time.png``: NDCG@10 against a
    device's adaptation time (log scale), in the spirit of the paper's Fig. 1(d)."""
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
