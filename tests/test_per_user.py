"""benchmarks/per_user.py: the per-user metrics kept for the paired statistics, each row one scored case, the
rows' mean RecBole's own figure; checked on a model whose rankings are set by hand."""

import math

import numpy as np
import pytest
import torch
from conftest import build_pipeline, write_interleaved_dataset

from benchmarks.per_user import evaluate_per_user, load_per_user, per_user_runs, save_per_user
from recbole_duet.training.trainer import get_trainer

SECOND_PLACE_NDCG = 1 / math.log2(3)


def rank_by_hand(model, config):
    """Score each test case's target first for even user ids and second (behind its neighbouring item) for odd ones."""
    n_items, item_field, user_field = model.n_items, config["ITEM_ID_FIELD"], config["USER_ID_FIELD"]

    def full_sort_predict(interaction):
        targets, users = interaction[item_field], interaction[user_field]
        scores = torch.zeros(len(targets), n_items)
        rows = torch.arange(len(targets))
        scores[rows, targets] = 1.0
        neighbours = targets % (n_items - 1) + 1  # a real item other than the target
        scores[rows, neighbours] = torch.where(users % 2 == 1, 2.0, 0.0)
        return scores

    model.full_sort_predict = full_sort_predict


def expected_ndcg(users):
    return np.where(users % 2 == 1, SECOND_PLACE_NDCG, 1.0)


def evaluated(settings, dataset="tiny"):
    config, (_, _, test), model = build_pipeline(settings, model="GRU4Rec", dataset=dataset)
    rank_by_hand(model, config)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return test, evaluate_per_user(trainer, test)


def test_leave_one_out_gives_one_row_per_user_with_the_hand_computed_values(tiny_config_dict):
    _, (result, per_user) = evaluated(tiny_config_dict)
    users = per_user["users"]
    assert len(users) == len(set(users)) == 30 and per_user["ndcg@10"].dtype == np.float32
    np.testing.assert_allclose(per_user["ndcg@10"], expected_ndcg(users), rtol=1e-6)
    np.testing.assert_array_equal(per_user["recall@10"], np.ones(30))
    assert result["ndcg@10"] == pytest.approx(per_user["ndcg@10"].mean(), abs=1e-4)  # RecBole rounds to 4 places


def test_the_trainer_is_left_as_it_was(tiny_config_dict):
    config, (_, _, test), model = build_pipeline(tiny_config_dict, model="GRU4Rec")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    collect, evaluate = trainer.eval_collector.eval_batch_collect, trainer.evaluator.evaluate
    evaluate_per_user(trainer, test)
    assert trainer.eval_collector.eval_batch_collect == collect and trainer.evaluator.evaluate == evaluate
    assert "eval_batch_collect" not in vars(trainer.eval_collector) and "evaluate" not in vars(trainer.evaluator)


def test_a_time_split_gives_a_row_per_test_interaction(tiny_config_dict, tmp_path):
    root, _ = write_interleaved_dataset(str(tmp_path / "clock"))
    settings = {
        **tiny_config_dict, "data_path": root, "MAX_ITEM_LIST_LENGTH": 50,
        "eval_args": {"split": {"TS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full"},
    }
    test, (result, per_user) = evaluated(settings, dataset="clock")
    users = per_user["users"]
    cases = test._dataset.inter_feat[test._dataset.uid_field].numpy()
    assert len(users) == len(cases) > len(set(users))  # users with several test interactions repeat
    assert sorted(users) == sorted(cases)
    np.testing.assert_allclose(per_user["ndcg@10"], expected_ndcg(users), rtol=1e-6)
    assert result["ndcg@10"] == pytest.approx(per_user["ndcg@10"].mean(), abs=1e-4)


def test_a_sampled_evaluation_gives_one_row_per_user(tiny_config_dict):
    settings = {**tiny_config_dict, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"}}
    config, (_, _, test), model = build_pipeline(settings, model="GRU4Rec")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result, per_user = evaluate_per_user(trainer, test)
    assert len(per_user["users"]) == len(set(per_user["users"])) == 30
    assert result["ndcg@10"] == pytest.approx(per_user["ndcg@10"].mean(), abs=1e-4)


def test_saved_arrays_load_back_and_group_by_model_and_seed(tmp_path):
    arrays = {"users": np.array([3, 1, 3]), "ndcg@10": np.array([0.5, 1.0, 0.0], dtype=np.float32)}
    relative = save_per_user(str(tmp_path), "GRU4Rec-2020", arrays)
    assert relative == "per_user/GRU4Rec-2020.npz" and (tmp_path / relative).is_file()
    assert [path.name for path in (tmp_path / "per_user").iterdir()] == ["GRU4Rec-2020.npz"]  # no temporary left
    assert save_per_user(str(tmp_path), "SASRec-2020", arrays) == "per_user/SASRec-2020.npz"  # the folder exists now
    records = [
        {"model": "GRU4Rec", "seed": 2020, "per_user_file": relative},
        {"model": "GRU4Rec", "seed": 2021},  # written before per-user arrays were kept
    ]
    loaded = load_per_user(str(tmp_path), records[0])
    assert loaded.keys() == arrays.keys()
    for key in arrays:
        np.testing.assert_array_equal(loaded[key], arrays[key])
    assert load_per_user(str(tmp_path), records[1]) is None
    runs = per_user_runs(records, str(tmp_path))
    assert list(runs) == ["GRU4Rec"] and list(runs["GRU4Rec"]) == [2020]
    np.testing.assert_array_equal(runs["GRU4Rec"][2020]["users"], arrays["users"])


def test_a_target_ranked_tenth_counts_at_10_and_not_before(tiny_config_dict):
    """Nine items score above every test target: each row's ndcg@10 is 1 / log2(11) and its recall@10 is 1 (at 9
    both would be 0), so the per-user columns are read at rank 10 exactly."""
    config, (_, _, test), model = build_pipeline(tiny_config_dict, model="GRU4Rec")
    n_items, item_field = model.n_items, config["ITEM_ID_FIELD"]

    def full_sort_predict(interaction):
        targets = interaction[item_field]
        scores = torch.zeros(len(targets), n_items)
        rows = torch.arange(len(targets))
        scores[rows, targets] = 1.0
        for step in range(1, 10):  # nine real items other than the target: (t + step) mod 40 + 1 never returns t
            scores[rows, (targets + step) % (n_items - 1) + 1] = 2.0
        return scores

    model.full_sort_predict = full_sort_predict
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result, per_user = evaluate_per_user(trainer, test)
    assert len(per_user["users"]) == 30
    np.testing.assert_allclose(per_user["ndcg@10"], np.full(30, 1 / math.log2(11)), rtol=1e-6)
    np.testing.assert_array_equal(per_user["recall@10"], np.ones(30))
    assert result["ndcg@10"] == pytest.approx(1 / math.log2(11), abs=1e-4) and result["recall@10"] == 1.0


def test_a_per_user_file_holding_pickled_objects_is_not_loaded(tmp_path):
    """The arrays are numbers: a file that needs pickle to load (which could run code) is refused."""
    np.savez(tmp_path / "evil.npz", users=np.array([{"not": "a number"}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_per_user(str(tmp_path), {"per_user_file": "evil.npz"})
