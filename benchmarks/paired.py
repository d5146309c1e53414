"""Paired comparisons of two models over the same test users: bootstrap CI, paired test, per-seed ratios.

For each seed both models ranked the same users (same data, same split), so the per-user differences are
paired. Pooled over seeds, the mean difference is bootstrapped by resampling users *within* each seed (the
seeds are strata: a resample keeps every seed's user count). scipy's ``bootstrap`` has no strata, so the
resampling is done here with multinomial counts; the paired t-test is scipy's ``ttest_rel``.
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


def stratified_bootstrap_ci(groups, confidence=0.95, n_resamples=N_RESAMPLES, seed=0):
    """Percentile CI of the pooled mean of ``groups`` (arrays), resampling within each group."""
    rng = np.random.default_rng(seed)
    total = sum(len(group) for group in groups)
    means = np.zeros(n_resamples)
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        for group in groups:
            counts = rng.multinomial(len(group), np.full(len(group), 1.0 / len(group)), size=size)
            means[start : start + size] += counts @ group
    means /= total
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def compare(first_runs, second_runs, metric):
    """Compare two models run on the same seeds.

    Args:
        first_runs, second_runs (dict): seed -> per-user arrays (``users`` and ``metric``).
        metric (str): e.g. ``"ndcg@10"``.

    Returns:
        dict: ``mean_difference`` (first - second, pooled over users and seeds), ``ci95``, ``p_value`` (paired
        t-test), ``seeds`` and ``ratios`` (first / second mean per seed), or None without a common seed.
    """
    seeds = sorted(set(first_runs) & set(second_runs))
    if not seeds:
        return None
    differences = [aligned_differences(first_runs[s], second_runs[s], metric) for s in seeds]
    first = np.concatenate([first_runs[s][metric] for s in seeds]).astype(np.float64)
    second = np.concatenate([second_runs[s][metric] for s in seeds]).astype(np.float64)
    ratios = [float(first_runs[s][metric].mean() / max(second_runs[s][metric].mean(), 1e-12)) for s in seeds]
    return {
        "metric": metric,
        "mean_difference": float(np.concatenate(differences).mean()),
        "ci95": stratified_bootstrap_ci(differences),
        "p_value": float(stats.ttest_rel(first, second).pvalue),
        "seeds": seeds,
        "ratios": ratios,
    }
