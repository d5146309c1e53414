"""Per-user test metrics of a trained model, kept so that paired statistics never need a retraining.

RecBole's evaluator averages its metrics over users and drops the per-user top-k hits it computed them from.
:func:`evaluate_per_user` runs the trainer's own evaluation while keeping, for every evaluated user, the id and
the hits, then scores each user with RecBole's own metric classes: the mean of a per-user column is RecBole's
reported figure.
"""

import os

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator.metrics import NDCG, Recall

PER_USER_METRICS = {"ndcg@10": (NDCG, 10), "recall@10": (Recall, 10)}


def evaluate_per_user(trainer, eval_data):
    """Evaluate the trainer's current model on ``eval_data``.

    Returns:
        tuple: RecBole's result dict, and ``{"users": ids, "<metric>": per-row values}`` as numpy arrays, rows
        in the evaluation order (a row is one scored case: a user, or one test interaction of a sequential model
        under full sort, so a user id repeats when a time split gives a user several).
    """
    uid_field = trainer.config["USER_ID_FIELD"]
    collector, evaluator = trainer.eval_collector, trainer.evaluator
    users, structs = [], []

    def collect(scores, interaction, positive_u, positive_i):
        # A full-sort batch scores each of its rows (a user, or for a sequential model one test interaction: under
        # a time split a user has several); a sampled (uniN) batch scores each user once, over a block of rows.
        if isinstance(eval_data, FullSortEvalDataLoader):
            users.append(interaction[uid_field].cpu())
        else:
            users.append(torch.unique_consecutive(interaction[uid_field]).cpu())
        return collect.original(scores, interaction, positive_u, positive_i)

    def evaluate(struct):
        structs.append(struct)
        return evaluate.original(struct)

    collect.original, evaluate.original = collector.eval_batch_collect, evaluator.evaluate
    collector.eval_batch_collect, evaluator.evaluate = collect, evaluate
    try:
        result = trainer.evaluate(eval_data, load_best_model=False)
    finally:
        del collector.eval_batch_collect, evaluator.evaluate  # back to the class's own methods
    topk = structs[-1].get("rec.topk").numpy()
    hits, positives = topk[:, :-1].astype(bool), topk[:, -1]
    per_user = {"users": torch.cat(users).numpy()}
    for name, (metric_class, k) in PER_USER_METRICS.items():
        per_user[name] = metric_class(trainer.config).metric_info(hits, positives)[:, k - 1].astype(np.float32)
    return result, per_user


def save_per_user(folder, name, per_user):
    """Write ``<folder>/per_user/<name>.npz`` (compressed) atomically: a harness stopped mid-write leaves the old
    file or none, never a truncated one that a later report would fail on. Return its path relative to
    ``folder``."""
    relative = os.path.join("per_user", f"{name}.npz")
    os.makedirs(os.path.join(folder, "per_user"), exist_ok=True)
    path = os.path.join(folder, relative)
    with open(path + ".tmp", "wb") as file:
        np.savez_compressed(file, **per_user)
    os.replace(path + ".tmp", path)
    return relative


def load_per_user(folder, record):
    """The per-user arrays of a harness record, or None for a record written before they were kept."""
    relative = record.get("per_user_file")
    if relative is None:
        return None
    with np.load(os.path.join(folder, relative), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}


def per_user_runs(records, folder):
    """``model -> seed -> per-user arrays`` of the harness records in ``folder`` (records without are skipped)."""
    runs = {}
    for record in records:
        per_user = load_per_user(folder, record)
        if per_user is not None:
            runs.setdefault(record["model"], {})[record["seed"]] = per_user
    return runs
