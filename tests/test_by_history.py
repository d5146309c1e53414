"""benchmarks/by_history.py: paired comparisons split by the length of each test user's history."""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import repo_on_path, write_atomic_dataset

from benchmarks.by_history import parse_pairs, split_comparisons, strata


def runs(users, per_seed):
    return {seed: {"users": np.array(users), "ndcg@10": np.array(values, dtype=np.float32)} for seed, values in per_seed.items()}


def test_strata_are_named_by_the_history_lengths_they_hold():
    assert [name for name, _, _ in strata([5, 10])] == ["1-5", "6-10", "> 10"]
    assert [name for name, _, _ in strata([10])] == ["1-10", "> 10"]


def test_each_stratum_compares_only_its_users_over_the_shared_seeds():
    lengths = np.array([-1, 3, 12, 7, 15])  # internal user 0 is RecBole's padding
    first = runs([1, 2, 3, 4], {1: [1.0, 0.0, 0.5, 1.0], 2: [0.0, 1.0, 0.0, 0.0], 3: [1.0, 1.0, 1.0, 1.0]})
    second = runs([1, 2, 3, 4], {1: [0.0, 0.0, 0.5, 0.5], 2: [0.0, 0.0, 0.5, 0.0]})
    (rows,) = split_comparisons([(first, second)], lengths[[1, 2, 3, 4]], [10], metrics=["ndcg@10"])
    short, long = rows
    # 1-10: users 1 and 3 (lengths 3, 7); seeds 1 and 2 (seed 3 has no partner)
    assert short["stratum"] == "1-10" and short["users"] == 2 and short["seeds"] == [1, 2]
    assert short["first"] == pytest.approx((1.0 + 0.5 + 0.0 + 0.0) / 4) and short["second"] == pytest.approx(1.0 / 4)
    assert short["mean_difference"] == pytest.approx(0.125)
    # > 10: users 2 and 4: differences 0, 0.5 (seed 1) and 1, 0 (seed 2)
    assert long["stratum"] == "> 10" and long["users"] == 2
    assert long["mean_difference"] == pytest.approx(1.5 / 4) and long["first"] == pytest.approx(0.5)
    low, high = long["ci95"]
    assert 0.0 <= low <= long["mean_difference"] <= high <= 1.0


def test_new_and_returning_users_are_strata_of_their_own():
    first = runs([1, 1, 2, 3], {1: [1.0, 1.0, 0.0, 0.5]})
    second = runs([1, 1, 2, 3], {1: [0.0, 0.0, 0.0, 0.0]})
    returning = np.array([True, True, False, False])
    (rows,) = split_comparisons([(first, second)], np.array([4, 5, 1, 2]), [10], metrics=["ndcg@10"], returning=returning)
    by_name = {row["stratum"]: row for row in rows}
    assert set(by_name) == {"1-10", "new users", "returning users"}
    assert (by_name["returning users"]["users"], by_name["returning users"]["cases"]) == (1, 2)
    assert by_name["returning users"]["mean_difference"] == pytest.approx(1.0)
    assert by_name["new users"]["mean_difference"] == pytest.approx(0.25) and by_name["new users"]["users"] == 2


def test_an_empty_stratum_gets_no_row():
    lengths = np.array([-1, 3, 4])
    first = runs([1, 2], {1: [1.0, 0.0]})
    (rows,) = split_comparisons([(first, first)], lengths[[1, 2]], [10], metrics=["ndcg@10"])
    assert [row["stratum"] for row in rows] == ["1-10"]


def test_the_script_splits_a_suite_folder_by_the_histories_in_the_dataset(tmp_path):
    data = write_atomic_dataset(str(tmp_path / "data"))
    with open(os.path.join(data, "tiny", "tiny.inter"), encoding="utf-8") as file:
        counts = collections.Counter(line.split("\t")[0] for line in file.read().splitlines()[1:])
    # RecBole numbers users in order of first appearance: u1 -> 1, ...
    lengths = {int(token[1:]): count - 1 for token, count in counts.items()}
    users = np.arange(1, len(lengths) + 1)
    folder = tmp_path / "suite"
    (folder / "per_user").mkdir(parents=True)
    records = []
    for model, offset in (("DUET-SASRec", 0.1), ("SASRec", 0.0)):
        # DUET better by 0.1 on every user with a history longer than 9 items, level elsewhere
        values = np.array([0.5 + offset * (lengths[u] > 9) for u in users], dtype=np.float32)
        np.savez_compressed(folder / "per_user" / f"{model}.npz", users=users, **{"ndcg@10": values, "recall@10": values})
        config = {"load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "realtime_window": 9}
        records.append(
            {"dataset": "tiny", "model": model, "backbone": "SASRec", "seed": 2020, "learning_rate": None}
            | {"config": config, "valid": {"ndcg@10": 0.1}, "per_user_file": f"per_user/{model}.npz"}
        )
    (folder / "results.json").write_text(json.dumps(records))
    out = tmp_path / "by-history.json"
    command = [sys.executable, "-m", "benchmarks.by_history", "--folder", str(folder)]
    command += ["--data-path", data, "--pairs", "DUET-SASRec:SASRec", "--out", str(out)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=repo_on_path())
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["edges"] == [9]  # the records' window
    rows = {(row["stratum"], row["metric"]): row for row in summary["comparisons"][0]["rows"]}
    assert rows["1-9", "ndcg@10"]["users"] == sum(length <= 9 for length in lengths.values())
    assert rows["> 9", "ndcg@10"]["users"] == sum(length > 9 for length in lengths.values())
    assert rows["1-9", "ndcg@10"]["mean_difference"] == pytest.approx(0.0)
    assert rows["> 9", "recall@10"]["mean_difference"] == pytest.approx(0.1)
    assert "| DUET-SASRec | SASRec | > 9 | " in completed.stdout

    completed = subprocess.run(command[:-4] + ["--pairs", "DUET-SASRec:GRU4Rec", "--out", str(out)], capture_output=True, text=True, env=repo_on_path())
    assert completed.returncode != 0 and "no per-user results of 'GRU4Rec'" in completed.stderr


def test_a_pair_without_a_colon_is_refused_by_name():
    with pytest.raises(SystemExit, match="--pairs: 'DUET-SASRec' is not FIRST:SECOND"):
        parse_pairs(["DUET-SASRec"], {"DUET-SASRec": {}})


def test_a_time_split_case_counts_its_users_earlier_interactions_and_knows_new_users(tmp_path):
    from conftest import write_interleaved_dataset

    from benchmarks.by_history import case_histories

    root, histories = write_interleaved_dataset(str(tmp_path / "data"), n_users=80)
    histories["new"] = [(9_990, "i1"), (9_995, "i2"), (9_999, "i3")]  # every interaction after the boundary
    same_day = [(9_996, "i4"), (9_996, "i5"), (9_996, "i6")]  # one time: RecBole orders them, time cannot
    with open(os.path.join(root, "clock", "clock.inter"), "a", encoding="utf-8") as file:
        file.write("".join(f"new\t{item}\t{t}\n" for t, item in histories["new"]))
        file.write("".join(f"same-day\t{item}\t{t}\n" for t, item in same_day))
    config = {
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 5,
        "eval_args": {"split": {"TS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full"},
    }
    record = {"config": config, "backbone": "SASRec", "dataset": "clock", "model": "SASRec"}
    from recbole.data import create_dataset

    from recbole_duet.config import Config

    dataset = create_dataset(Config(model="SASRec", dataset="clock", config_dict={**config, "data_path": root}))
    test = dataset.build()[2]
    users = test.inter_feat["user_id"].numpy()
    lengths, returning = case_histories(record, root, users)
    tokens, times = dataset.id2token("user_id", users), test.inter_feat["timestamp"].numpy()
    boundary = times.min()
    assert sorted(lengths[tokens == "same-day"]) == [1, 2]
    for token, time, length, known in zip(tokens, times, lengths, returning):
        if token != "same-day":
            assert length == sum(t < time for t, _ in histories[token])  # all of them, not the 5 a history keeps
            assert known == any(t < boundary for t, _ in histories[token])
    assert not returning[tokens == "new"].any() and returning.any() and lengths.max() > 5
    with pytest.raises(ValueError, match="not the rebuilt split's test cases"):
        case_histories(record, root, users[::-1])


def test_under_a_sampled_time_split_a_row_is_a_user_with_the_history_before_their_first_case(tmp_path):
    """RecBole's ``uni100`` scores a user's test cases together: one row per user, in user-id order."""
    from conftest import write_interleaved_dataset
    from recbole.data import create_dataset

    from benchmarks.by_history import case_histories
    from recbole_duet.config import Config

    root, histories = write_interleaved_dataset(str(tmp_path / "data"), n_users=80)
    config = {
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 5,
        "eval_args": {"split": {"TS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "uni10"},
    }
    record = {"config": config, "backbone": "SASRec", "dataset": "clock", "model": "SASRec"}
    dataset = create_dataset(Config(model="SASRec", dataset="clock", config_dict={**config, "data_path": root}))
    test = dataset.build()[2].inter_feat
    users = np.unique(test["user_id"].numpy())
    assert len(users) < len(test)  # some user has several test cases
    lengths, returning = case_histories(record, root, users)
    boundary = test["timestamp"].numpy().min()
    for token, length, known in zip(dataset.id2token("user_id", users), lengths, returning):
        first_case = min(t for t, _ in histories[token] if t >= boundary)
        assert length == sum(t < first_case for t, _ in histories[token])
        assert known == any(t < boundary for t, _ in histories[token])
    with pytest.raises(ValueError, match="not the rebuilt split's test cases"):
        case_histories(record, root, users[::-1])
