"""Paired comparisons of two models over the same test users: bootstrap CI, paired test, per-seed ratios.

For each seed both models ranked the same users (same data, same split), so the per-user differences are
paired. Pooled over seeds, the mean difference is bootstrapped by resampling users *within* each seed (the
seeds are strata: a resample keeps every seed's user count). scipy's ``bootstrap`` has no strata, so the
resampling is done here with multinomial counts, drawn once for all the comparisons of a report over the same
users (``compare_all``); the paired t-test is scipy's ``ttest_rel``.
"""

import numpy as np
from scipy import stats

N_RESAMPLES = 10_000
CHUNK = 500  # resamples drawn at once: keeps a chunk's count matrix small for 22k users


def aligned_differences(first, second, metric):
    """``first[metric] - second[metric]`` per user, after checking both ranked the same users in the same order."""
    if not np.array_equal(first["users"], second["users"]):
        raise ValueError("the two runs evaluated different users: they cannot be paired")
    return first[metric].astype(np.float64) - second[metric].astype(np.float64)


def stratified_bootstrap_cis(groups, confidence=0.95, n_resamples=N_RESAMPLES, seed=0):
    """Percentile CIs of the pooled column means of ``groups`` (arrays of users x columns), resampling users within
    each group.

    Drawing the counts is the whole cost (a multinomial over every user), and the counts depend only on the groups'
    sizes: every column shares them, so one call bootstraps many comparisons of the same users at the price of one.
    A column's interval is the one a call with that column alone would give (to rounding in the last bit).
    """
    rng = np.random.default_rng(seed)
    total = sum(len(group) for group in groups)
    means = np.zeros((n_resamples, groups[0].shape[1]))
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        for group in groups:
            counts = rng.multinomial(len(group), np.full(len(group), 1.0 / len(group)), size=size)
            means[start : start + size] += counts @ group
    means /= total
    tail = (1.0 - confidence) / 2 * 100
    lows, highs = np.percentile(means, [tail, 100 - tail], axis=0)
    return [(float(low), float(high)) for low, high in zip(lows, highs)]


def compare_all(requests):
    """Compare pairs of models run on the same seeds, bootstrapping together the requests over the same users.

    Args:
        requests (list): ``(first_runs, second_runs, metric)`` triples; a run set maps seed -> per-user arrays
            (``users`` and ``metric``), ``metric`` is e.g. ``"ndcg@10"``.

    Returns:
        list: per request, None without a common seed, else a dict: ``metric``, ``mean_difference`` (first -
        second, pooled over users and seeds), ``ci95``, ``p_value`` (paired t-test), ``seeds`` and ``ratios``
        (first / second mean per seed).
    """
    results = [None] * len(requests)
    batches = {}  # the seeds' user counts -> (request index, per-seed differences)
    for index, (first_runs, second_runs, metric) in enumerate(requests):
        seeds = sorted(set(first_runs) & set(second_runs))
        if not seeds:
            continue
        differences = [aligned_differences(first_runs[s], second_runs[s], metric) for s in seeds]
        first = np.concatenate([first_runs[s][metric] for s in seeds]).astype(np.float64)
        second = np.concatenate([second_runs[s][metric] for s in seeds]).astype(np.float64)
        results[index] = {
            "metric": metric,
            "mean_difference": float(np.concatenate(differences).mean()),
            "p_value": float(stats.ttest_rel(first, second).pvalue),
            "seeds": seeds,
            "ratios": [float(first_runs[s][metric].mean() / max(second_runs[s][metric].mean(), 1e-12)) for s in seeds],
        }
        batches.setdefault(tuple(len(d) for d in differences), []).append((index, differences))
    for sizes, members in batches.items():
        groups = [np.column_stack([differences[g] for _, differences in members]) for g in range(len(sizes))]
        for (index, _), interval in zip(members, stratified_bootstrap_cis(groups)):
            results[index]["ci95"] = interval
    return results


def compare(first_runs, second_runs, metric):
    """``compare_all`` for one request."""
    return compare_all([(first_runs, second_runs, metric)])[0]
