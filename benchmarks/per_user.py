"""Per-user test metrics of a trained model, kept so that paired statistics never need a retraining.

RecBole's evaluator averages its metrics over users and drops the per-user top-k hits it computed them from.
:func:`evaluate_per_user` runs the trainer's own evaluation while keeping, for every evaluated user, the id and
the hits, then scores each user with RecBole's own metric classes: the mean of a per-user column is RecBole's
reported figure.

Under a sampled evaluation (``uniN``: each target against N drawn items) it also keeps the pointwise metrics of
the DUET paper's protocol, which RecBole cannot report beside ranking metrics (AUC and LogLoss are its "value"
metrics, for labelled data): each user's AUC over its (target, drawn item) pairs, whose mean over users weighted
by their targets is RecBole's GAUC, the AUC over all pairs pooled, and, for a model whose scores are
probabilities (DIN's), the LogLoss of the targets as positives and the drawn items as negatives. An item drawn
twice for a user counts once, as in RecBole's ranking of the same draws. RecBole draws the items afresh at each
evaluation from numpy's global generator; here they are drawn from the run's seed, so that every model of a seed
is tested against the same items and the paired comparisons pair like with like.
"""

import os

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator.metrics import NDCG, Recall
from scipy.stats import rankdata

from recbole_duet.training.sampled_validation import numpy_seeded

PER_USER_METRICS = {"ndcg@10": (NDCG, 10), "recall@10": (Recall, 10)}
LOGLOSS_EPS = 1e-15  # RecBole's LogLoss clips probabilities the same way


def sampled_pair_metrics(scores, positive_u, positive_i, probabilities):
    """Per user of one sampled batch (the rows of ``scores``, unscored items at -inf): the AUC over its (target,
    drawn item) pairs with ties counting half, its number of targets, and where ``probabilities`` the sum and
    count of its pointwise log losses; and the targets' and drawn items' scores, for the pooled AUC."""
    scored = torch.isfinite(scores)
    positive = torch.zeros_like(scored)
    positive[positive_u, positive_i] = True
    negative = scored & ~positive
    target_scores = scores[positive_u, positive_i]
    rows, row_negative = scores[positive_u], negative[positive_u]  # one row per target: its user's drawn items
    wins = ((target_scores[:, None] > rows) & row_negative).sum(1) + 0.5 * ((target_scores[:, None] == rows) & row_negative).sum(1)
    target_auc = wins.double() / row_negative.sum(1).double()
    n_users = scores.shape[0]
    targets = torch.zeros(n_users, dtype=torch.float64).index_add_(0, positive_u, torch.ones_like(target_auc))
    auc = torch.zeros(n_users, dtype=torch.float64).index_add_(0, positive_u, target_auc) / targets
    batch = {"auc": auc, "targets": targets, "target_scores": target_scores, "drawn_scores": scores[negative]}
    if probabilities:
        p = scores.double().clamp(LOGLOSS_EPS, 1 - LOGLOSS_EPS)
        losses = torch.where(positive, -torch.log(p), torch.where(negative, -torch.log1p(-p), 0.0))
        batch["logloss_sum"], batch["scored"] = losses.sum(1), scored.sum(1).double()
    return batch


def pooled_auc(target_scores, drawn_scores):
    """The probability that a target outscores a drawn item, over every pair of the two sets (ties half)."""
    ranks = rankdata(np.concatenate([target_scores, drawn_scores]))[: len(target_scores)]
    n_targets, n_drawn = len(target_scores), len(drawn_scores)
    return float((ranks.sum() - n_targets * (n_targets + 1) / 2) / (n_targets * n_drawn))


def evaluate_per_user(trainer, eval_data, probabilities=False):
    """Evaluate the trainer's current model on ``eval_data``.

    Args:
        probabilities (bool): the model's scores are probabilities (DIN's), so a sampled evaluation also reports
            LogLoss.

    Returns:
        tuple: RecBole's result dict, and ``{"users": ids, "<metric>": per-row values}`` as numpy arrays, rows
        in the evaluation order (a row is one scored case: a user, or one test interaction of a sequential model
        under full sort, so a user id repeats when a time split gives a user several). A sampled evaluation adds
        the per-user ``gauc`` (and ``logloss``) columns and the result's ``gauc``, ``auc`` (and ``logloss``).
    """
    uid_field = trainer.config["USER_ID_FIELD"]
    collector, evaluator = trainer.eval_collector, trainer.evaluator
    sampled = not isinstance(eval_data, FullSortEvalDataLoader)
    users, structs, batches = [], [], []

    def collect(scores, interaction, positive_u, positive_i):
        # A full-sort batch scores each of its rows (a user, or for a sequential model one test interaction: under
        # a time split a user has several); a sampled (uniN) batch scores each user once, over a block of rows.
        if sampled:
            users.append(torch.unique_consecutive(interaction[uid_field]).cpu())
            batches.append(sampled_pair_metrics(scores.cpu(), positive_u.cpu(), positive_i.cpu(), probabilities))
        else:
            users.append(interaction[uid_field].cpu())
        return collect.original(scores, interaction, positive_u, positive_i)

    def evaluate(struct):
        structs.append(struct)
        return evaluate.original(struct)

    collect.original, evaluate.original = collector.eval_batch_collect, evaluator.evaluate
    collector.eval_batch_collect, evaluator.evaluate = collect, evaluate
    try:
        with numpy_seeded(trainer.config["seed"]):  # a sampled evaluation's draws; a full sort draws nothing
            result = trainer.evaluate(eval_data, load_best_model=False)
    finally:
        del collector.eval_batch_collect, evaluator.evaluate  # back to the class's own methods
    topk = structs[-1].get("rec.topk").numpy()
    hits, positives = topk[:, :-1].astype(bool), topk[:, -1]
    per_user = {"users": torch.cat(users).numpy()}
    for name, (metric_class, k) in PER_USER_METRICS.items():
        per_user[name] = metric_class(trainer.config).metric_info(hits, positives)[:, k - 1].astype(np.float32)
    if sampled:
        result = {**result, **pointwise_metrics(batches, per_user)}
    return result, per_user


def pointwise_metrics(batches, per_user):
    """Add the sampled batches' per-user ``gauc`` (and ``logloss``) columns to ``per_user``; return the overall
    ``gauc`` (users weighted by their targets, as RecBole's GAUC), pooled ``auc`` (and ``logloss`` over all pairs)."""
    merged = {key: torch.cat([batch[key] for batch in batches]).numpy() for key in batches[0]}
    per_user["gauc"] = merged["auc"].astype(np.float32)
    overall = {
        "gauc": float((merged["auc"] * merged["targets"]).sum() / merged["targets"].sum()),
        "auc": pooled_auc(merged["target_scores"], merged["drawn_scores"]),
    }
    if "logloss_sum" in merged:
        per_user["logloss"] = (merged["logloss_sum"] / merged["scored"]).astype(np.float32)
        overall["logloss"] = float(merged["logloss_sum"].sum() / merged["scored"].sum())
    return overall


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
