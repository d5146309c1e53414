"""The harness's statistics: paired differences, the within-seed bootstrap, and the choice of learning rate."""

import os

import numpy as np
import pytest
from scipy import stats

from benchmarks.paired import compare, compare_all, stratified_bootstrap_cis
from benchmarks.per_user import save_per_user
from benchmarks.report import paired_comparisons, paired_lines, selected_records


def run(users, values, metric="ndcg@10"):
    return {"users": np.array(users), metric: np.array(values, dtype=np.float32)}


def test_compare_pools_paired_differences_over_seeds():
    first = {1: run([1, 2, 3, 4], [0.5, 0.0, 1.0, 0.25]), 2: run([1, 2], [1.0, 0.0])}
    second = {1: run([1, 2, 3, 4], [0.25, 0.0, 0.5, 0.25]), 2: run([1, 2], [0.5, 0.5]), 3: run([1], [1.0])}
    result = compare(first, second, "ndcg@10")
    # differences: 0.25, 0, 0.5, 0 (seed 1) and 0.5, -0.5 (seed 2): mean 0.75 / 6
    assert result["mean_difference"] == pytest.approx(0.125)
    assert result["seeds"] == [1, 2]  # seed 3 has no partner
    assert result["ratios"] == pytest.approx([1.75 / 1.0, 1.0 / 1.0])
    expected_p = stats.ttest_rel([0.5, 0.0, 1.0, 0.25, 1.0, 0.0], [0.25, 0.0, 0.5, 0.25, 0.5, 0.5]).pvalue
    assert result["p_value"] == pytest.approx(expected_p)
    low, high = result["ci95"]
    assert low < 0.125 < high


def test_a_user_with_several_cases_is_resampled_whole():
    """Time split: user 1 has three cases that all gain 1, user 2 one case that gains 0. Per case the mean is 0.75,
    per user 0.5; resampling users (never single cases) gives the means 1 (user 1 twice), 0.75 and 0 (user 2
    twice), each of the extremes with probability 1/4, so both bounds of the 95% interval are extremes."""
    first = {1: run([1, 1, 1, 2], [1.0, 1.0, 1.0, 0.0])}
    second = {1: run([1, 1, 1, 2], [0.0, 0.0, 0.0, 0.0])}
    result = compare(first, second, "ndcg@10")
    assert result["mean_difference"] == pytest.approx(0.75) and result["per_user_mean_difference"] == pytest.approx(0.5)
    assert (result["users"], result["cases"]) == (2, 4)
    assert result["ci95"] == pytest.approx((0.0, 1.0)) and result["per_user_ci95"] == pytest.approx((0.0, 1.0))
    assert result["p_value"] == pytest.approx(stats.ttest_1samp([1.0, 0.0], 0.0).pvalue, nan_ok=True)


def test_the_users_cases_need_not_be_adjacent_and_keep_their_user():
    first = {1: run([2, 1, 2, 1], [0.5, 1.0, 0.5, 0.0])}
    second = {1: run([2, 1, 2, 1], [0.0, 0.0, 0.0, 0.0])}
    result = compare(first, second, "ndcg@10")
    assert result["per_user_mean_difference"] == pytest.approx((0.5 + 0.5) / 2)  # user 2: 0.5, user 1: 0.5
    low, high = result["per_user_ci95"]
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)  # both users' means are 0.5


def test_runs_over_different_users_cannot_be_paired():
    with pytest.raises(ValueError, match="different users"):
        compare({1: run([1, 2], [0.0, 1.0])}, {1: run([2, 1], [0.0, 1.0])}, "ndcg@10")


def test_no_common_seed_gives_no_comparison():
    assert compare({1: run([1], [0.0])}, {2: run([1], [0.0])}, "ndcg@10") is None


def test_bootstrap_resamples_within_each_seed():
    # Each seed's differences are constant, so every within-seed resample has the same pooled mean: a
    # resampling that mixed users across seeds would spread the CI.
    ((low, high),) = stratified_bootstrap_cis([np.full((10, 1), 1.0), np.full((30, 1), -1.0)], n_resamples=200)
    assert low == pytest.approx(-0.5) and high == pytest.approx(-0.5)


def test_bootstrap_ci_covers_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(0)
    small = [rng.normal(0.1, 1.0, 100)]
    large = [rng.normal(0.1, 1.0, 10_000)]
    ((small_low, small_high),) = stratified_bootstrap_cis([small[0][:, None]], n_resamples=2000)
    ((large_low, large_high),) = stratified_bootstrap_cis([large[0][:, None]], n_resamples=2000)
    assert small_low < small[0].mean() < small_high and large_low < large[0].mean() < large_high
    assert large_high - large_low < (small_high - small_low) / 5
    # the normal approximation of the mean's 95% interval, for a sanity check of the width
    assert large_high - large_low == pytest.approx(2 * 1.96 * large[0].std() / 100, rel=0.15)


def record(model, seed, lr, valid):
    return {"dataset": "d", "model": model, "seed": seed, "learning_rate": lr, "valid": {"ndcg@10": valid}}


def test_each_model_and_seed_is_reported_at_the_rate_chosen_on_validation():
    records = [
        record("SASRec", 1, 0.001, 0.20),
        record("SASRec", 1, 0.003, 0.30),
        record("DUET-SASRec", 1, 0.001, 0.40),
        record("DUET-SASRec", 1, 0.003, 0.35),
        record("Base-SASRec", 1, 0.001, 0.10),
        record("Base-SASRec", 1, 0.003, 0.50),  # Base is DUET's training: DUET's validation decides
        record("SASRec", 2, 0.003, 0.25),  # later seeds ran at the chosen rate only
        record("Layers-SASRec", 1, 0.001, 0.10),
        record("Layers-SASRec", 1, 0.003, 0.20),
        {**record("Finetune-SASRec", 1, 0.001, 0.60), "training": "Layers-SASRec"},  # tunes the Layers training
        {**record("Finetune-SASRec", 1, 0.003, 0.15), "training": "Layers-SASRec"},
    ]
    chosen = {(r["model"], r["seed"]): r["learning_rate"] for r in selected_records(records)}
    assert chosen == {
        ("SASRec", 1): 0.003,
        ("DUET-SASRec", 1): 0.001,
        ("Base-SASRec", 1): 0.001,
        ("SASRec", 2): 0.003,
        ("Layers-SASRec", 1): 0.003,
        ("Finetune-SASRec", 1): 0.003,
    }


def test_finetune_rows_recorded_before_the_layers_family_follow_duets_rate():
    """Older folders tuned DUET's training and carry no ``training`` field: DUET's validation still decides."""
    records = [
        record("DUET-SASRec", 1, 0.001, 0.40),
        record("DUET-SASRec", 1, 0.003, 0.35),
        record("Finetune-SASRec", 1, 0.001, 0.10),
        record("Finetune-SASRec", 1, 0.003, 0.50),
    ]
    assert {(r["model"], r["learning_rate"]) for r in selected_records(records)} == {
        ("DUET-SASRec", 0.001),
        ("Finetune-SASRec", 0.001),
    }


def test_a_family_member_added_later_is_the_only_one_recorded_again():
    from benchmarks.run import pending_jobs

    records = [
        {"dataset": "d", "model": m, "seed": 2020, "learning_rate": 0.001, "valid": {"ndcg@10": 0.1}}
        for m in ("SASRec", "DUET-SASRec", "Base-SASRec")
    ]
    records.append({**records[0], "model": "Layers-SASRec", "training": "Layers-SASRec"})
    models = ["SASRec", "DUET-SASRec", "Base-SASRec", "Layers-SASRec", "FinetuneAll-SASRec"]
    added = ("layers", "SASRec", ("FinetuneAll-SASRec",))  # fine-tuning tunes the Layers training
    assert pending_jobs(models, [2020], "d", records, []) == [(added, 2020, None)]
    grid = pending_jobs(models, [2020, 2021], "d", records, [0.001])
    assert grid[0] == (added, 2020, 0.001)
    assert [job for job, seed, _ in grid if seed == 2021] == [
        ("plain", "SASRec", ("SASRec",)),
        ("duet", "SASRec", ("DUET-SASRec", "Base-SASRec")),
        ("layers", "SASRec", ("Layers-SASRec", "FinetuneAll-SASRec")),
    ]
    # a one-rate grid has nothing to choose: a later seed runs at that rate without waiting for the first
    assert {rate for _, seed, rate in grid if seed == 2021} == {0.001}
    two_rates = pending_jobs(models, [2020, 2021], "d", records, [0.001, 0.003])
    assert {rate for _, seed, rate in two_rates if seed == 2021} == {None}  # chosen once the first seed is done


def write_variant(folder, valid_by_seed, per_user_by_seed, metric="ndcg@10"):
    """A harness folder holding one DUET-GRU4Rec record per seed and its per-user test file."""
    import json

    os.makedirs(folder / "per_user")
    records = []
    for seed, valid in valid_by_seed.items():
        users, values = per_user_by_seed[seed]
        np.savez_compressed(folder / "per_user" / f"{seed}.npz", **run(users, values, metric))
        test = float(np.mean(values))
        record = {"dataset": "d", "model": "DUET-GRU4Rec", "seed": seed, "learning_rate": 0.003, "epochs": 4}
        record.update(valid={metric: valid}, test={metric: test}, per_user_file=f"per_user/{seed}.npz")
        records.append(record)
    (folder / "results.json").write_text(json.dumps(records))
    return str(folder)


@pytest.mark.parametrize("metric", ["ndcg@10", "recall@10"])
def test_ablation_table_compares_each_variant_with_the_reference_on_shared_seeds(tmp_path, metric):
    from benchmarks.ablation_table import markdown, variant_row, variant_runs

    reference_users = {1: ([1, 2], [0.5, 0.0]), 2: ([1, 2], [1.0, 0.0])}
    reference = write_variant(tmp_path / "ref", {1: 0.30, 2: 0.40}, reference_users, metric)
    other_users = {1: ([1, 2], [1.0, 0.0]), 2: ([1, 2], [1.0, 0.5]), 3: ([1, 2], [1.0, 1.0])}
    other = write_variant(tmp_path / "other", {1: 0.35, 2: 0.38, 3: 0.9}, other_users, metric)
    reference_runs = variant_runs(reference, "DUET-GRU4Rec")
    row = variant_row("other", other, variant_runs(other, "DUET-GRU4Rec"), ("ref", reference), reference_runs, metric)
    assert f"| valid {metric} | test {metric} |" in markdown([row], "DUET-GRU4Rec", "ref", metric)
    assert row["seeds"] == [1, 2, 3] and row["shared_seeds"] == [1, 2]
    assert row["valid"] == pytest.approx((0.35 + 0.38 + 0.9) / 3)
    assert row["valid_difference"] == pytest.approx((0.05 - 0.02) / 2) and row["valid_wins"] == 1
    assert row["test_difference"] == pytest.approx((0.5 + 0.0 + 0.0 + 0.5) / 4)  # seed 3 has no partner
    assert "valid_difference" not in variant_row("ref", reference, reference_runs, ("ref", reference), reference_runs, metric)


def test_ablation_variants_may_name_another_model_of_their_folder(tmp_path):
    from benchmarks.ablation_table import parse_variants

    folder = write_variant(tmp_path / "suite", {1: 0.3}, {1: ([1], [0.5])})
    assert parse_variants([f"duet={folder}", f"gru=GRU4Rec@{folder}"], "DUET-GRU4Rec") == {
        "duet": (folder, "DUET-GRU4Rec"),
        "gru": (folder, "GRU4Rec"),
    }
    for bad in ["duet", f"={folder}", f"duet=@{folder}", "duet=GRU4Rec@", f"duet={tmp_path / 'missing'}"]:
        with pytest.raises(SystemExit, match="--variants: '"):
            parse_variants([bad], "DUET-GRU4Rec")


def test_comparisons_bootstrapped_together_get_the_intervals_they_get_alone():
    """The report bootstraps every comparison over the same users in one pass: batching must not move a CI."""
    rng = np.random.default_rng(1)

    def runs(seeds, n_users):
        return {s: {"users": np.arange(n_users), "ndcg@10": rng.random(n_users), "recall@10": rng.random(n_users)} for s in seeds}

    duet, base, layers = runs([1, 2], 50), runs([1, 2], 50), runs([1], 50)
    requests = [(duet, base, "ndcg@10"), (duet, layers, "ndcg@10"), (duet, base, "recall@10"), (duet, runs([3], 50), "ndcg@10")]
    together = compare_all(requests)
    assert together[3] is None  # no common seed
    for request, batched in zip(requests[:3], together):
        alone = compare(*request)
        assert batched["ci95"] == pytest.approx(alone["ci95"], abs=1e-12)  # same counts; only the sums' rounding
        assert batched["mean_difference"] == alone["mean_difference"]
    assert together[0]["ci95"] != together[2]["ci95"]  # each column is its own comparison
    assert together[1]["seeds"] == [1]


def test_a_report_prints_an_interval_signed_to_four_places():
    from benchmarks.paired import interval

    assert interval((-0.0012, 0.0034)) == "[-0.0012, +0.0034]"
    assert interval((0.5, 1.0)) == "[+0.5000, +1.0000]"


def test_the_refusal_to_pair_says_why_in_full():
    from benchmarks.paired import aligned_differences

    with pytest.raises(ValueError) as error:
        aligned_differences(run([1, 2], [0.0, 1.0]), run([2, 1], [0.0, 1.0]), "ndcg@10")
    assert str(error.value) == "the two runs evaluated different users: they cannot be paired"


def test_a_request_without_a_common_seed_leaves_the_later_ones_compared():
    first, second = {1: run([1, 2], [1.0, 0.5])}, {1: run([1, 2], [0.5, 0.5])}
    lonely = ({1: run([1], [0.0])}, {2: run([1], [0.0])}, "recall@10")
    none, result = compare_all([lonely, (first, second, "ndcg@10")])
    assert none is None
    assert result["metric"] == "ndcg@10" and result["seeds"] == [1]
    assert result["mean_difference"] == pytest.approx(0.25) and (result["users"], result["cases"]) == (2, 2)


def test_users_with_several_cases_each_get_a_per_user_interval_of_their_means():
    """Every user has several cases, in unequal numbers, so the per-user interval is not the per-case one. User 1
    has 2 cases that gain 1, users 2-4 have 3 cases that gain 0. A resample draws user 1 ``a`` times of 4 (binomial,
    p = 1/4): per case its mean is 2a / (2a + 3(4 - a)), per user a / 4. a = 0 has probability 0.32, a <= 2 0.95
    and a <= 3 0.996, so the 95% bounds are a = 0 and a = 3: per case [0, 6/9], per user [0, 3/4]."""
    users = [1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    gains = [1.0, 1.0] + [0.0] * 9
    result = compare({1: run(users, gains)}, {1: run(users, [0.0] * 11)}, "ndcg@10")
    assert result["mean_difference"] == pytest.approx(2 / 11) and result["per_user_mean_difference"] == 0.25
    assert result["ci95"] == pytest.approx((0.0, 6 / 9))
    assert result["per_user_ci95"] == pytest.approx((0.0, 0.75))


def test_the_bootstrap_takes_the_2_5_and_97_5_percentiles_of_seed_0s_resampled_means():
    """One group, one chunk of draws: the resampled means are the seed-0 multinomial counts times the values over
    the user count, and the interval is their 2.5th and 97.5th percentiles (so a report's CI reproduces)."""
    values = np.array([0.3, -1.2, 0.8, 2.5, 0.0, -0.4, 1.1, 0.6, -2.0, 0.9, 1.7])
    n = len(values)
    draws = np.random.default_rng(0).multinomial(n, np.full(n, 1.0 / n), size=400)
    expected = np.percentile(draws @ values / n, [2.5, 97.5])
    ((low, high),) = stratified_bootstrap_cis([values[:, None]], n_resamples=400)
    assert (low, high) == pytest.approx(tuple(expected), rel=1e-12, abs=1e-15)
    assert stratified_bootstrap_cis([values[:, None]], n_resamples=400, seed=1) != [(low, high)]


def test_a_resample_count_that_is_not_a_multiple_of_the_chunk_fills_every_row():
    from benchmarks.paired import CHUNK

    ((low, high),) = stratified_bootstrap_cis([np.full((7, 1), 0.25)], n_resamples=CHUNK + 250)
    assert (low, high) == (0.25, 0.25)


def test_the_pointwise_metrics_are_paired_where_every_seed_kept_them(tmp_path):
    """DUET(DIN) under a sampled evaluation keeps gauc and logloss per user and is compared by them too; a sequential
    DUET kept neither and is compared by ndcg@10 and recall@10 only."""
    users = np.arange(4)
    ranking = {"users": users, "ndcg@10": np.full(4, 0.5), "recall@10": np.ones(4)}
    pointwise = {**ranking, "gauc": np.array([0.9, 0.8, 0.7, 0.6]), "logloss": np.full(4, 0.3)}
    records = []
    other = {"ndcg@10": np.array([0.4, 0.5, 0.6, 0.3]), "logloss": np.array([0.5, 0.4, 0.6, 0.5])}
    for model, arrays in (("DUET-DIN", pointwise), ("DIN", {**pointwise, **other}),
                          ("DUET-SASRec", ranking), ("SASRec", {**ranking, "ndcg@10": other["ndcg@10"]})):
        records.append({"model": model, "seed": 2020, "per_user_file": save_per_user(str(tmp_path), model, arrays)})
    comparisons = paired_comparisons(records, str(tmp_path))
    by_pair = {(c["first"], c["second"], c["metric"]): c for c in comparisons}
    assert sorted(by_pair) == [
        ("DUET-DIN", "DIN", "gauc"), ("DUET-DIN", "DIN", "logloss"), ("DUET-DIN", "DIN", "ndcg@10"),
        ("DUET-DIN", "DIN", "recall@10"), ("DUET-SASRec", "SASRec", "ndcg@10"), ("DUET-SASRec", "SASRec", "recall@10"),
    ]
    assert by_pair["DUET-DIN", "DIN", "logloss"]["mean_difference"] == pytest.approx(-0.2)
    assert "lower logloss is better" in paired_lines(comparisons)[0]
    assert "logloss" not in paired_lines([c for c in comparisons if c["metric"] != "logloss"])[0]
