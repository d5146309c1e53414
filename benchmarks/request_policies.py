"""When should a device ask the cloud? Every test device's interactions after the time boundary replayed through
each request policy (:mod:`recbole_duet.device.request_policy`), for each trained DUET of a time-split results folder.

    python -m benchmarks.request_policies --folder benchmarks/results/time-split-beauty-time --data-path ../shared/data

At each test interaction, in time order per device, the policy decides whether to request; a request generates
parameters from the device's history as it is then; the interaction is scored (full ranking, as the suite's
NDCG@10 and Recall@10) with the parameters the device holds and its whole current history. ``always`` is the
suite's own DUET figure, ``never`` its global layers. Each setting is paired against ``always`` over the same
cases, users resampled whole (:mod:`benchmarks.paired`).

Output in the folder: ``request_policies.json`` (one row per model, seed and policy: request rate, metrics,
payload bytes and the device's decision time per interaction; and rows pooled over seeds with paired CIs against
``always``), ``request_policies.md`` and ``request_policies.png`` (NDCG@10 against request rate). The per-case
arrays go to ``<folder>/per_user/``, so a rerun only scores what is new.
"""

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

from benchmarks.kept_models import load_kept_model, model_file, trained_duet_records
from benchmarks.paired import compare_all, interval
from benchmarks.per_user import PER_USER_METRICS, load_per_user, save_per_user
from benchmarks.run import write_json_atomically
from recbole_duet.deploy.graphs import DeviceParameters
from recbole_duet.device.bundle import PayloadCodec
from recbole_duet.device.request_policy import parse_policy, replay, source_of_parameters

DEFAULT_POLICIES = [
    "always", "never", "every_k:2", "every_k:3", "every_k:5", "every_k:10",
    "drift:0.05", "drift:0.1", "drift:0.2", "drift:0.3", "drift:0.5",
]
BATCH = 512
TIMED_DECISIONS = 200  # device-side decisions timed per setting (onnxruntime for the code, one thread)


def device_cases(test_data, model):
    """The test cases in replay order (by device, then time): a dict of tensors, and each device's slice."""
    feat = test_data._dataset.inter_feat
    users, times = feat[test_data._dataset.uid_field].numpy(), feat[test_data._dataset.time_field].numpy()
    order = np.lexsort((np.arange(len(users)), times, users))
    cases = {
        "users": torch.from_numpy(users[order]),
        "item_seq": feat[model.ITEM_SEQ][order],
        "item_seq_len": feat[model.ITEM_SEQ_LEN][order],
        "targets": feat[model.ITEM_ID][order],
    }
    starts = np.flatnonzero(np.r_[True, cases["users"].numpy()[1:] != cases["users"].numpy()[:-1]])
    return cases, [slice(a, b) for a, b in zip(starts, np.r_[starts[1:], len(users)])]


@torch.no_grad()
def device_codes(model, cases):
    return torch.cat(
        [
            model.device_code(cases["item_seq"][i : i + BATCH], cases["item_seq_len"][i : i + BATCH])
            for i in range(0, len(cases["users"]), BATCH)
        ]
    ).numpy()


def parameter_sources(policy, devices, codes):
    """For each case the case whose request its parameters came from (-1: the global layers)."""
    sources = np.full(len(codes), -1, dtype=np.int64)
    for device in devices:
        requests = replay(policy, codes[device] if policy.needs_code else None, n=device.stop - device.start)
        local = source_of_parameters(requests)
        sources[device] = np.where(local >= 0, local + device.start, -1)
    return sources


@torch.no_grad()
def score_cases(model, cases, sources):
    """Per-case NDCG@10 and Recall@10 with the parameters of each case's source (full ranking, padding excluded;
    a target outranked by ``r`` items is at rank ``r + 1``)."""
    per_case = {name: [] for name in PER_USER_METRICS}
    for i in range(0, len(sources), BATCH):
        rows, source = slice(i, i + BATCH), torch.from_numpy(sources[i : i + BATCH])
        representation, _ = model.represent(cases["item_seq"][rows], cases["item_seq_len"][rows])
        if (source < 0).all():
            user_vector = model.classifier(representation)
        else:
            if (source < 0).any():
                raise ValueError("a batch mixing devices with and without a request; every policy but never asks first")
            generated = model.generate(cases["item_seq"][source], cases["item_seq_len"][source])
            user_vector = model.classifier(representation, generated)
        scores = model.scoring.full_sort(user_vector)
        scores[:, 0] = -torch.inf
        target_scores = scores.gather(1, cases["targets"][rows].unsqueeze(1))
        outranked = (scores > target_scores).sum(dim=1).numpy()
        for name, (_, k) in PER_USER_METRICS.items():
            hit = outranked < k
            value = np.where(hit, 1.0 / np.log2(outranked + 2), 0.0) if name.startswith("ndcg") else hit
            per_case[name].append(value.astype(np.float32))
    return {"users": cases["users"].numpy(), **{name: np.concatenate(v) for name, v in per_case.items()}}


def payload_bytes(model, cases):
    """The size of one device's payload as the service sends it (compact JSON, float32, base85)."""
    with torch.no_grad():
        layout = DeviceParameters(model.generate(cases["item_seq"][:1], cases["item_seq_len"][:1])).layout
    manifest = {"model_version": "0" * 16, "payload": [{"name": n, "shape": list(s)} for n, s in layout]}
    return len(PayloadCodec(manifest).encode_json([np.zeros((1, *shape), np.float32) for _, shape in layout])[0])


def decision_ms(policy, model, cases, codes, max_history):
    """Milliseconds a device spends per interaction deciding: its code through ``code.onnx`` (onnxruntime, one
    thread) when the policy reads it, and the policy's own bookkeeping."""
    import onnxruntime as ort

    from recbole_duet.deploy.export import export_code_graph

    n = min(TIMED_DECISIONS, len(codes))
    code_ms = 0.0
    if policy.needs_code:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "code.onnx")
            export_code_graph(model, max_history, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            item_seq, item_seq_len = cases["item_seq"][:n].numpy(), cases["item_seq_len"][:n].numpy()
            start = time.perf_counter()
            for row in range(n):
                session.run(None, {"item_seq": item_seq[row : row + 1], "item_seq_len": item_seq_len[row : row + 1]})
            code_ms = (time.perf_counter() - start) * 1000 / n
    start = time.perf_counter()
    replay(policy, codes[:n] if policy.needs_code else None, n=n)
    return code_ms + (time.perf_counter() - start) * 1000 / n


def replay_record(record, folder, policies, data_path):
    """One trained DUET through every policy: ``(rows, {policy: per-case arrays})``."""
    label = os.path.basename(model_file(folder, record))[: -len(".pth")]
    config, model, (_, _, test_data) = load_kept_model(record, folder, data_path)
    cases, devices = device_cases(test_data, model)
    codes = device_codes(model, cases)
    size = payload_bytes(model, cases)
    rows, runs = [], {}
    for text in policies:
        policy = parse_policy(text)
        sources = parameter_sources(policy, devices, codes)
        relative = os.path.join("per_user", f"{label}-policy-{text.replace(':', '-')}.npz")
        runs[text] = load_per_user(folder, {"per_user_file": relative}) if os.path.isfile(
            os.path.join(folder, relative)
        ) else None
        if runs[text] is None:
            runs[text] = score_cases(model, cases, sources)
            save_per_user(folder, os.path.basename(relative)[: -len(".npz")], runs[text])
        request_rate = float(np.mean(sources == np.arange(len(sources))))
        rows.append(
            {
                "model": record["model"], "seed": record["seed"], "policy": text.partition(":")[0],
                "setting": text.partition(":")[2] or None, "request_rate": request_rate,
                **{name: float(runs[text][name].mean()) for name in PER_USER_METRICS},
                "bytes_per_interaction": request_rate * size,
                "device_ms_per_interaction": decision_ms(policy, model, cases, codes, config["MAX_ITEM_LIST_LENGTH"]),
                "cases": len(sources), "devices": len(devices),
            }
        )
    return rows, runs


def pooled_rows(per_seed_rows, runs_by_model, policies):
    """Per model and policy, over seeds: mean request rate and metrics, and each metric paired against
    ``always``."""
    requests, keys = [], []
    for model, seeds in sorted(runs_by_model.items()):
        for text in policies:
            for metric in PER_USER_METRICS:
                at_policy = {seed: runs[text] for seed, runs in seeds.items()}
                always = {seed: runs["always"] for seed, runs in seeds.items()}
                requests.append((at_policy, always, metric))
                keys.append((model, text, metric))
    pooled = {}
    for (model, text, metric), result in zip(keys, compare_all(requests)):
        seeds_rows = [r for r in per_seed_rows if r["model"] == model and _text(r) == text]
        row = pooled.setdefault((model, text), {
            "model": model, "seed": "pooled", "seeds": sorted(r["seed"] for r in seeds_rows),
            "policy": seeds_rows[0]["policy"], "setting": seeds_rows[0]["setting"],
            **{key: float(np.mean([r[key] for r in seeds_rows])) for key in (
                "request_rate", *PER_USER_METRICS, "bytes_per_interaction", "device_ms_per_interaction")},
        })
        row[f"{metric}_minus_always"] = result["mean_difference"]
        row[f"{metric}_ci95"] = result["ci95"]
        row[f"{metric}_per_user_minus_always"] = result["per_user_mean_difference"]
        row[f"{metric}_per_user_ci95"] = result["per_user_ci95"]
        row[f"{metric}_p"] = None if math.isnan(result["p_value"]) else result["p_value"]
    return list(pooled.values())


def _text(row):
    return row["policy"] if row["setting"] is None else f"{row['policy']}:{row['setting']}"


def markdown(rows, folder):
    lines = [
        f"# Request policies, {folder}",
        "",
        "Every test device's interactions after the boundary replayed in time order: the policy decides at each "
        "one, a request generates parameters from the history as it is then, the interaction is scored with the "
        "parameters held. Pooled over seeds; differences to `always` over the same cases, 95% bootstrap CI with "
        "users resampled whole within each seed. Bytes: payloads sent per interaction; device ms: the device's "
        "decision per interaction (its code through onnxruntime, one thread, for `drift`).",
        "",
        "| model | policy | request rate | ndcg@10 | - always | 95% CI | recall@10 | - always | 95% CI "
        "| bytes / interaction | device ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {_text(row)} | {row['request_rate']:.3f} | {row['ndcg@10']:.4f} | "
            f"{row['ndcg@10_minus_always']:+.4f} | {interval(row['ndcg@10_ci95'])} | {row['recall@10']:.4f} | "
            f"{row['recall@10_minus_always']:+.4f} | {interval(row['recall@10_ci95'])} | "
            f"{row['bytes_per_interaction']:.0f} | {row['device_ms_per_interaction']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """NDCG@10 against request rate, one panel per model, one curve per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({row["model"] for row in rows})
    figure, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for axis, model in zip(axes[0], models):
        for policy, marker in (("every_k", "o-"), ("drift", "s-"), ("always", "k*"), ("never", "kx")):
            points = sorted((r["request_rate"], r["ndcg@10"]) for r in rows if r["model"] == model and r["policy"] == policy)
            if points:
                axis.plot(*zip(*points), marker, label=policy)
        axis.set_title(model)
        axis.set_xlabel("requests per interaction")
        axis.set_ylabel("test NDCG@10")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="a time-split harness results folder with kept models")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--policies", nargs="+", default=DEFAULT_POLICIES)
    return parser


def main():
    args = build_parser().parse_args()
    try:
        policies = [str(parse_policy(text)) for text in args.policies]
    except ValueError as error:
        sys.exit(f"--policies: {error}")
    if "always" not in policies:
        sys.exit("--policies must include always, the policy every other is compared with")
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    torch.set_num_threads(1)
    per_seed, runs_by_model = [], {}
    for record in trained_duet_records(args.folder):
        rows, runs = replay_record(record, args.folder, policies, args.data_path)
        per_seed += rows
        runs_by_model.setdefault(record["model"], {})[record["seed"]] = runs
    pooled = pooled_rows(per_seed, runs_by_model, policies)
    write_json_atomically(os.path.join(args.folder, "request_policies.json"), per_seed + pooled)
    with open(os.path.join(args.folder, "request_policies.md"), "w", encoding="utf-8") as file:
        file.write(markdown(pooled, args.folder))
    try:
        plot(pooled, os.path.join(args.folder, "request_policies.png"))
    except ImportError:
        print("warning: matplotlib is not installed (pip install 'recbole-duet[bench]'): no plot", file=sys.stderr)
    print(markdown(pooled, args.folder))


if __name__ == "__main__":
    main()
