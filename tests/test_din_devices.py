"""DUET(DIN) and Finetune(DIN) under RecBole's sampled evaluation: one personalisation per device, shared by its
candidate rows."""

import pytest
import torch
from conftest import assert_device_parameters_equal, build_pipeline, finetune_pipeline

from recbole_duet.model.device_rows import DeviceRows
from recbole_duet.model.finetune import seeded_negatives

CANDIDATES = 101  # uni100: the target and 100 sampled items per device


@pytest.fixture(params=[0, 4], ids=["full", "rank4"])
def uni100(request, din_config_dict):
    """A trained-shape DUET(DIN) and one test batch of RecBole's uni100 loader (101 rows per device)."""
    config_dict = {**din_config_dict, "generator_rank": request.param, "eval_batch_size": 8 * CANDIDATES}
    _, (_, _, test_data), model = build_pipeline(config_dict)
    model.eval()
    batch = next(iter(test_data))[0]
    assert len(batch) == 8 * CANDIDATES
    return model, batch


@pytest.fixture
def uni100_finetune(din_config_dict):
    """Finetune(DIN) on the cloud model of the same DUET(DIN), and one test batch of its uni100 loader."""
    _, (_, _, test_data), model = finetune_pipeline({**din_config_dict, "eval_batch_size": 8 * CANDIDATES})
    model.eval()
    return model, next(iter(test_data))[0]


def device_inputs(model, batch):
    return batch[model.USER_ID], batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]


def first_rows_of_devices(model, batch):
    """Row indices of each device's candidates, in batch order (a device = its exact inputs)."""
    user = batch[model.USER_ID]
    return [torch.nonzero(user == device).flatten() for device in user.unique()]


def test_device_rows_group_and_ungroup_rows_of_uneven_devices():
    user = torch.tensor([3, 1, 3, 2, 1, 3])
    seq = torch.tensor([[5, 6], [7, 0], [5, 6], [7, 0], [7, 0], [5, 6]])
    rows = DeviceRows(user, seq)
    assert len(rows.devices[0]) == 3 and rows.rows_per_device == 3
    values = torch.arange(6.0).unsqueeze(-1) + 1
    grouped = rows.group(values)
    torch.testing.assert_close(rows.ungroup(grouped), values)
    for device in range(3):  # each group holds one device's rows, in batch order, then zero padding
        members = torch.nonzero(rows.device == device).flatten()
        assert torch.equal(rows.devices[0][device], user[members[0]])
        assert torch.equal(rows.devices[1][device], seq[members[0]])
        torch.testing.assert_close(grouped[device, : len(members)], values[members])
        assert grouped[device, len(members) :].eq(0).all()


def test_same_user_with_another_history_is_another_device():
    rows = DeviceRows(torch.tensor([1, 1]), torch.tensor([[5, 6], [5, 7]]))
    assert len(rows.devices[0]) == 2


def test_predict_equals_generating_every_row_separately(uni100):
    model, batch = uni100
    user, item_seq, item_seq_len = device_inputs(model, batch)
    with torch.no_grad():
        _, mlp_input = model.tap(user, item_seq, item_seq_len, batch[model.ITEM_ID])
        per_row = torch.sigmoid(model.head(mlp_input, model.generate(user, item_seq, item_seq_len)))
        torch.testing.assert_close(model.predict(batch), per_row, atol=1e-6, rtol=0)


def assert_scores_do_not_depend_on_the_rest_of_the_batch(model, batch):
    devices = first_rows_of_devices(model, batch)
    with torch.no_grad():
        together = model.predict(batch)
        for rows in (devices[0], devices[-1], torch.cat([devices[3], devices[1]])):
            torch.testing.assert_close(model.predict(batch[rows]), together[rows], atol=1e-6, rtol=0)


def test_a_devices_scores_do_not_depend_on_the_rest_of_the_batch(uni100):
    assert_scores_do_not_depend_on_the_rest_of_the_batch(*uni100)


def test_a_devices_finetuned_scores_do_not_depend_on_the_rest_of_the_batch(uni100_finetune):
    assert_scores_do_not_depend_on_the_rest_of_the_batch(*uni100_finetune)


def test_fine_tuning_gives_a_device_the_same_mlp_every_time(uni100_finetune):
    model, batch = uni100_finetune
    devices = DeviceRows(*device_inputs(model, batch)).devices
    together = model.finetuned_parameters(*devices)
    assert_device_parameters_equal(model.finetuned_parameters(*devices), together, 0, atol=0)  # scored twice
    reversed_order = model.finetuned_parameters(*(tensor.flip(0) for tensor in devices))
    last = len(devices[0]) - 1
    for device in (0, 3, last):
        alone = model.finetuned_parameters(*(tensor[device : device + 1] for tensor in devices))
        assert_device_parameters_equal(alone, together, device)
        assert_device_parameters_equal(alone, reversed_order, last - device)


def test_every_candidate_row_of_a_device_is_scored_by_its_one_finetuned_mlp(uni100_finetune):
    model, batch = uni100_finetune
    user, item_seq, item_seq_len = device_inputs(model, batch)
    with torch.no_grad():
        scores = model.predict(batch)
        _, mlp_input = model.tap(user, item_seq, item_seq_len, batch[model.ITEM_ID])
    for rows in first_rows_of_devices(model, batch)[:3]:
        first = rows[:1]
        mlp = model.finetuned_parameters(user[first], item_seq[first], item_seq_len[first])
        with torch.no_grad():
            expected = torch.sigmoid(model.head.forward_with_parameters(mlp_input[rows].unsqueeze(0), mlp))[0]
        torch.testing.assert_close(scores[rows], expected, atol=1e-6, rtol=0)


def test_seeded_negatives_depend_on_the_device_and_the_seed_only():
    user = torch.tensor([4, 9, 4])
    seq = torch.tensor([[1, 2, 3], [3, 2, 1], [1, 2, 3]])
    draws = seeded_negatives([user, seq], 50, 30, seed=7)
    assert draws.shape == (3, 50) and draws.min() >= 1 and draws.max() < 30
    assert torch.equal(draws[0], draws[2])  # the same device, wherever it sits
    assert not torch.equal(draws[0], draws[1])
    assert torch.equal(seeded_negatives([user[1:], seq[1:]], 50, 30, seed=7), draws[1:])
    assert not torch.equal(seeded_negatives([user, seq], 50, 30, seed=8), draws)
    assert seeded_negatives([user], 200, 4, seed=7).unique().tolist() == [1, 2, 3]  # every real item, never padding
