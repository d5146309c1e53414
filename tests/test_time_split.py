"""What RecBole builds under the global time split (``eval_args: {split: {TS: ...}, order: TO}``) for a sequential
model, checked on a tiny dataset whose users interleave in time: every test case is scored with all of its user's
earlier interactions, from before and after the boundary, and nothing after the boundary is ever a target that
the model trains or validates on."""

import numpy as np
import pytest
from conftest import build_pipeline, write_interleaved_dataset

MAX_LENGTH = 50  # longer than any history here, so a history is never cut


@pytest.fixture
def time_split(tiny_config_dict, tmp_path):
    root, histories = write_interleaved_dataset(str(tmp_path / "data"))
    settings = {
        **tiny_config_dict, "data_path": root, "MAX_ITEM_LIST_LENGTH": MAX_LENGTH,
        "eval_args": {"split": {"TS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full"},
    }
    _, loaders, _ = build_pipeline(settings, model="SASRec", dataset="clock")
    return histories, [loader._dataset for loader in loaders]


def cases(dataset):
    """Each case of a built split as (user token, target time, target item token, history item tokens)."""
    feat = dataset.inter_feat
    users = dataset.id2token("user_id", feat["user_id"].numpy())
    items = dataset.id2token("item_id", feat["item_id"].numpy())
    lengths = feat["item_length"].numpy()
    histories = [dataset.id2token("item_id", row[:n]) for row, n in zip(feat["item_id_list"].numpy(), lengths)]
    return list(zip(users, feat["timestamp"].numpy(), items, histories))


def test_no_interaction_after_the_boundary_is_a_training_or_validation_target(time_split):
    _, (train, valid, test) = time_split
    before = [t for dataset in (train, valid) for _, t, _, _ in cases(dataset)]
    after = [t for _, t, _, _ in cases(test)]
    assert len(after) > 0 and len(before) > 4 * len(after)
    assert max(before) < min(after)


def test_a_test_case_is_scored_with_all_of_its_users_earlier_interactions(time_split):
    histories, (train, _, test) = time_split
    boundary = min(t for _, t, _, _ in cases(test))
    spans = []
    for user, time, item, history in cases(test):
        earlier = [(t, i) for t, i in histories[user] if t < time]
        assert list(history) == [i for _, i in earlier] and (time, item) in histories[user]
        spans.append((any(t < boundary for t, _ in earlier), any(t >= boundary for t, _ in earlier)))
    assert (True, True) in spans  # histories that hold items from both sides of the boundary are there


def test_every_interaction_but_each_users_first_is_a_case_exactly_once(time_split):
    histories, datasets = time_split
    built = sorted((u, float(t), i) for dataset in datasets for u, t, i, _ in cases(dataset))
    expected = sorted((u, float(t), i) for u, rows in histories.items() for t, i in rows[1:])
    assert built == expected
    assert np.isin([u for u, _, _, _ in cases(datasets[2])], list(histories)).all()
