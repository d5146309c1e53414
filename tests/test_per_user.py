"""benchmarks/per_user.py: the per-user metrics kept for the paired statistics, each row one scored case, the
rows' mean RecBole's own figure; checked on a model whose rankings are set by hand."""

import math

import numpy as np
import pytest
import torch
from conftest import build_pipeline, write_interleaved_dataset

from benchmarks.per_user import (
    evaluate_per_user,
    load_per_user,
    per_user_runs,
    pointwise_metrics,
    pooled_auc,
    sampled_pair_metrics,
    save_per_user,
)
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


# ---------------------------------------------------------------------------------------------------------------
# sampled evaluation: the DUET paper's pointwise metrics


def score_probabilities_by_hand(model, test, config):
    """``predict`` (what a sampled evaluation calls): each user's test target gets 0.8 and its drawn items 0.2 for
    even user ids; target and drawn items all 0.5 (ties) for odd ones. Returns ``{(user, item): (score, label)}``
    of what it scored, filled as the evaluation runs."""
    user_field, item_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    inter = test._dataset.inter_feat
    target_of = dict(zip(inter[user_field].tolist(), inter[item_field].tolist()))
    scored = {}

    def predict(interaction):
        users, items = interaction[user_field], interaction[item_field]
        is_target = items == torch.tensor([target_of[u] for u in users.tolist()])
        scores = torch.where(users % 2 == 0, torch.where(is_target, 0.8, 0.2), torch.tensor(0.5))
        for user, item, score, label in zip(users.tolist(), items.tolist(), scores.tolist(), is_target.tolist()):
            scored[user, item] = (score, label)
        return scores

    model.predict = predict
    return scored


def test_a_sampled_evaluation_keeps_the_hand_computed_auc_and_logloss_of_each_user(tiny_config_dict):
    settings = {
        **tiny_config_dict, "metrics": ["NDCG", "Recall", "GAUC"],
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"},
    }
    config, (_, _, test), model = build_pipeline(settings, model="GRU4Rec")
    scored = score_probabilities_by_hand(model, test, config)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    recboles_gauc = trainer.evaluate(test, load_best_model=False)["gauc"]
    scored.clear()
    result, per_user = evaluate_per_user(trainer, test, probabilities=True)
    even = per_user["users"] % 2 == 0
    assert len(per_user["users"]) == 30 and even.sum() == 15
    np.testing.assert_allclose(per_user["gauc"], np.where(even, 1.0, 0.5))  # odd users: every pair a tie
    np.testing.assert_allclose(per_user["logloss"], np.where(even, -math.log(0.8), -math.log(0.5)), rtol=1e-6)
    assert result["gauc"] == pytest.approx(0.75) and recboles_gauc == pytest.approx(0.75, abs=1e-4)
    # the pooled figures over every (user, item) pair the evaluation scored, computed here pair by pair
    scores, labels = np.array(list(scored.values())).T
    assert labels.sum() == 30 and len(labels) > 30
    logloss = -np.where(labels == 1, np.log(scores), np.log(1 - scores)).mean()
    assert result["logloss"] == pytest.approx(logloss, rel=1e-6)
    targets, drawn = scores[labels == 1], scores[labels == 0]
    assert result["auc"] == pytest.approx(((targets[:, None] > drawn) + 0.5 * (targets[:, None] == drawn)).mean())


def test_without_probabilities_a_sampled_evaluation_reports_no_logloss(tiny_config_dict):
    settings = {**tiny_config_dict, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"}}
    config, (_, _, test), model = build_pipeline(settings, model="GRU4Rec")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result, per_user = evaluate_per_user(trainer, test)
    assert "logloss" not in result and "logloss" not in per_user
    assert per_user["gauc"].shape == (30,) and ((per_user["gauc"] >= 0) & (per_user["gauc"] <= 1)).all()


def test_a_full_sort_evaluation_has_no_pointwise_metrics(tiny_config_dict):
    _, (result, per_user) = evaluated(tiny_config_dict)
    assert not {"gauc", "auc", "logloss"} & (set(result) | set(per_user))


def test_a_user_with_two_targets_averages_its_pairs():
    """User 0: targets at 0.9 and 0.4 against drawn 0.5 and 0.1 (pairs won: 2 and 1 of 2 each, AUC 0.75); user 1:
    one target at 0.3 tied with one drawn item and below the other (AUC 0.25). Unscored items are -inf."""
    inf = float("-inf")
    scores = torch.tensor([[0.9, 0.4, 0.5, 0.1, inf], [inf, 0.3, 0.3, inf, 0.6]])
    batch = sampled_pair_metrics(scores, torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), probabilities=True)
    np.testing.assert_allclose(batch["auc"].numpy(), [0.75, 0.25])
    np.testing.assert_array_equal(batch["targets"].numpy(), [2, 1])
    np.testing.assert_array_equal(batch["scored"].numpy(), [4, 3])
    loss_0 = -(math.log(0.9) + math.log(0.4) + math.log(0.5) + math.log(0.9))
    loss_1 = -(math.log(0.3) + math.log(0.7) + math.log(0.4))
    np.testing.assert_allclose(batch["logloss_sum"].numpy(), [loss_0, loss_1], rtol=1e-6)
    assert sorted(batch["drawn_scores"].tolist()) == pytest.approx([0.1, 0.3, 0.5, 0.6])
    per_user = {}
    overall = pointwise_metrics([batch], per_user)
    assert overall["gauc"] == pytest.approx((2 * 0.75 + 0.25) / 3)  # users weighted by their targets, as RecBole's
    assert overall["logloss"] == pytest.approx((loss_0 + loss_1) / 7)  # over all seven scored pairs
    np.testing.assert_allclose(per_user["logloss"], [loss_0 / 4, loss_1 / 3], rtol=1e-6)
    assert per_user["gauc"].dtype == per_user["logloss"].dtype == np.float32  # as the ranking columns: half the bytes
    assert overall["auc"] == pytest.approx(((0.9 > 0.5) + (0.9 > 0.1) + (0.9 > 0.3) + (0.9 > 0.6) + (0.4 > 0.1)
                                            + (0.4 > 0.3) + (0.3 > 0.1) + 0.5) / 12)


def test_a_probability_of_exactly_0_or_1_costs_a_clipped_finite_log_loss():
    """User 0's target scored 0 and its drawn item 1: each loss is -log(1e-15), as RecBole's LogLoss clips; user 1's
    target scored 1 and drawn item 0 cost next to nothing."""
    scores = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    batch = sampled_pair_metrics(scores, torch.tensor([0, 1]), torch.tensor([0, 1]), probabilities=True)
    clipped = -math.log(1e-15) - math.log1p(-(1 - 1e-15))  # 1 - 1e-15 rounds in double: about 34.54 each
    np.testing.assert_allclose(batch["logloss_sum"].numpy(), [clipped, 0.0], rtol=1e-9, atol=1e-12)


def test_the_pooled_auc_counts_every_pair_once_and_ties_half():
    rng = np.random.default_rng(0)
    targets, drawn = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 70).astype(float)
    by_pairs = ((targets[:, None] > drawn) + 0.5 * (targets[:, None] == drawn)).mean()
    assert pooled_auc(targets, drawn) == pytest.approx(by_pairs)
    assert pooled_auc(np.array([2.0]), np.array([1.0, 3.0])) == 0.5


def test_every_model_of_a_seed_is_tested_against_the_same_drawn_items(tiny_config_dict):
    """RecBole draws a sampled evaluation's items afresh from numpy at each pass; the per-user metrics of two models
    (or two passes) of one seed must rest on the same draws, and leave numpy's generator where it was."""
    settings = {**tiny_config_dict, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"}}
    config, (_, _, test), model = build_pipeline(settings, model="GRU4Rec")
    drawn = []
    original = model.predict
    model.predict = lambda interaction: drawn.append(interaction[config["ITEM_ID_FIELD"]].clone()) or original(interaction)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    np.random.seed(1)
    first = evaluate_per_user(trainer, test)[1]
    assert np.random.randint(1 << 30) == np.random.RandomState(1).randint(1 << 30)  # the caller's stream goes on
    first_draws, drawn[:] = torch.cat(drawn), []
    np.random.seed(2)
    second = evaluate_per_user(trainer, test)[1]
    torch.testing.assert_close(torch.cat(drawn), first_draws)
    np.testing.assert_array_equal(first["gauc"], second["gauc"])
