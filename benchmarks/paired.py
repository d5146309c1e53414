"""Paired comparisons of two models over the same test cases: bootstrap CI, paired test, per-seed ratios.

For each seed both models scored the same cases (same data, same split), so the per-case differences are paired.
A case is a user under leave-one-out and one test interaction under a time split, where a user has several: their
differences are not independent, so the bootstrap resamples *users* (clusters), each with all of its cases, and
the paired t-test runs over users' mean differences. Pooled over seeds, the mean difference is bootstrapped by
resampling users *within* each seed (the seeds are strata: a resample keeps every seed's user count). Two means
are reported: per case (every test interaction weighs the same, RecBole's figure) and per user (every user weighs
the same); with one case per user they are one. scipy's ``bootstrap`` has neither strata nor clusters, so the
resampling is done here with multinomial counts, drawn once for all the comparisons of a report over the same
users (``compare_all``).
"""

import numpy as np
from scipy import stats

N_RESAMPLES = 10_000
CHUNK = 500  # resamples drawn at once: keeps a chunk's count matrix small for 22k users


def aligned_differences(first, second, metric):
    """``first[metric] - second[metric]`` per case, after checking both scored the same users' cases in one order."""
    if not np.array_equal(first["users"], second["users"]):
        raise ValueError("the two runs evaluated different users: they cannot be paired")
    return first[metric].astype(np.float64) - second[metric].astype(np.float64)


def user_clusters(users, values):
    """Per user (in order of first appearance): the sum of ``values`` over the user's cases and the case count."""
    unique, first_seen, inverse = np.unique(users, return_index=True, return_inverse=True)
    order = np.argsort(first_seen)  # keep the evaluation's user order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    clusters = rank[inverse]
    sums = np.stack([np.bincount(clusters, weights=column, minlength=len(unique)) for column in np.atleast_2d(values.T)], 1)
    return sums, np.bincount(clusters, minlength=len(unique)).astype(np.float64)


def stratified_bootstrap_cis(groups, confidence=0.95, n_resamples=N_RESAMPLES, seed=0, case_counts=None):
    """Percentile CIs of the pooled column means of ``groups`` (arrays of users x columns), resampling users within
    each group.

    With ``case_counts`` (per group, each user's number of cases) a group's rows are each user's *sums* over its
    cases, and a resample's mean is its cases' mean: the users drawn, each with all of its cases.

    Drawing the counts is the whole cost (a multinomial over every user), and the counts depend only on the groups'
    sizes: every column shares them, so one call bootstraps many comparisons of the same users at the price of one.
    A column's interval is the one a call with that column alone would give (to rounding in the last bit).
    """
    rng = np.random.default_rng(seed)
    if case_counts is None:
        case_counts = [np.ones(len(group)) for group in groups]
    sums = np.zeros((n_resamples, groups[0].shape[1]))
    cases = np.zeros((n_resamples, 1))
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        for group, counts in zip(groups, case_counts):
            draws = rng.multinomial(len(group), np.full(len(group), 1.0 / len(group)), size=size)
            sums[start : start + size] += draws @ group
            cases[start : start + size, 0] += draws @ counts
    means = sums / cases
    tail = (1.0 - confidence) / 2 * 100
    lows, highs = np.percentile(means, [tail, 100 - tail], axis=0)
    return [(float(low), float(high)) for low, high in zip(lows, highs)]


def compare_all(requests):
    """Compare pairs of models run on the same seeds, bootstrapping together the requests over the same users.

    Args:
        requests (list): ``(first_runs, second_runs, metric)`` triples; a run set maps seed -> per-case arrays
            (``users`` and ``metric``), ``metric`` is e.g. ``"ndcg@10"``.

    Returns:
        list: per request, None without a common seed, else a dict: ``metric``, ``mean_difference`` (first -
        second, pooled over cases and seeds) and its ``ci95``, ``per_user_mean_difference`` (each user's mean
        difference, averaged over users and seeds) and its ``per_user_ci95``, ``p_value`` (paired t-test over the
        users' mean differences), ``users`` and ``cases`` (summed over seeds), ``seeds`` and ``ratios`` (first /
        second mean per seed).
    """
    results = [None] * len(requests)
    batches = {}  # the seeds' users -> (request index, per-seed user sums, per-seed per-user means)
    for index, (first_runs, second_runs, metric) in enumerate(requests):
        seeds = sorted(set(first_runs) & set(second_runs))
        if not seeds:
            continue
        differences = [aligned_differences(first_runs[s], second_runs[s], metric) for s in seeds]
        clusters = [user_clusters(first_runs[s]["users"], d[:, None]) for s, d in zip(seeds, differences)]
        user_means = np.concatenate([sums[:, 0] / counts for sums, counts in clusters])
        results[index] = {
            "metric": metric,
            "mean_difference": float(np.concatenate(differences).mean()),
            "per_user_mean_difference": float(user_means.mean()),
            "p_value": float(stats.ttest_1samp(user_means, 0.0).pvalue),
            "users": len(user_means),
            "cases": sum(len(d) for d in differences),
            "seeds": seeds,
            "ratios": [float(first_runs[s][metric].mean() / max(second_runs[s][metric].mean(), 1e-12)) for s in seeds],
        }
        key = tuple(counts.tobytes() for _, counts in clusters)
        batches.setdefault(key, []).append((index, clusters))
    for members in batches.values():
        n_seeds = len(members[0][1])
        counts = [members[0][1][g][1] for g in range(n_seeds)]
        case_sums = [np.column_stack([clusters[g][0][:, 0] for _, clusters in members]) for g in range(n_seeds)]
        user_means = [group / count[:, None] for group, count in zip(case_sums, counts)]
        per_case = stratified_bootstrap_cis(case_sums, case_counts=counts)
        one_case_each = all((count == 1).all() for count in counts)  # then per user is per case, draws included
        per_user = per_case if one_case_each else stratified_bootstrap_cis(user_means)
        for (index, _), interval, user_interval in zip(members, per_case, per_user):
            results[index]["ci95"] = interval
            results[index]["per_user_ci95"] = user_interval
    return results


def interval(bounds):
    """A confidence interval as the reports print it: ``[-0.0012, +0.0034]``."""
    low, high = bounds
    return f"[{low:+.4f}, {high:+.4f}]"


def compare(first_runs, second_runs, metric):
    """``compare_all`` for one request."""
    return compare_all([(first_runs, second_runs, metric)])[0]
