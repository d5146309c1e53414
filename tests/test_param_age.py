"""``duet_param_age``: scoring with the parameters a device got ``k`` interactions ago, built by hand here."""

import pytest
import torch
from conftest import build_pipeline

pytestmark = pytest.mark.kernel_sensitive


def aged_and_by_hand(config_dict, age):
    """Scores of a batch of training histories (lengths 1 .. 8) at ``duet_param_age: age``, and the same scores built
    by hand: the static layers on the whole history, the generator on the history cut ``age`` items short (its
    window then ends ``age`` interactions before the scored one), the global layers where nothing is left."""
    _, (train_data, _, _), model = build_pipeline({**config_dict, "duet_param_age": age})
    model.eval()
    batch = next(iter(train_data))
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        aged = model.full_sort_predict(batch)
        model.param_age = 0
        representation = model.represent(item_seq, item_seq_len)[0]
        old = item_seq_len > age
        cut_len = (item_seq_len - age).clamp(min=1)
        cut_seq = item_seq * (torch.arange(item_seq.size(1)) < cut_len.unsqueeze(1))
        generated = model.generate(cut_seq[old], cut_len[old])
        by_hand = model.scoring.full_sort(model.classifier(representation, None))  # the global layers
        by_hand[old] = model.scoring.full_sort(model.classifier(representation[old], generated))
    return aged, by_hand, old


@pytest.mark.parametrize(
    "backbone, generator_input, stabilizer",
    [("SASRec", "window", True), ("GRU4Rec", "window", True), ("SASRec", "backbone", True), ("SASRec", "window", False)],
)
@pytest.mark.parametrize("age", [1, 3])
def test_the_generator_reads_the_window_as_it_was_age_interactions_ago(
    tiny_config_dict, backbone, generator_input, stabilizer, age
):
    """``stabilizer: false`` leaves the update ungated, so the devices without a window are masked by themselves."""
    settings = {**tiny_config_dict, "backbone": backbone, "generator_input": generator_input, "stabilizer": stabilizer}
    aged, by_hand, old = aged_and_by_hand(settings, age)
    assert old.any() and (~old).any()  # both kinds of device are in the batch
    torch.testing.assert_close(aged, by_hand, atol=1e-5, rtol=1e-5)


def test_age_zero_scores_as_the_current_window(tiny_config_dict):
    _, (train_data, _, _), model = build_pipeline({**tiny_config_dict, "duet_param_age": 0})
    model.eval()
    batch = next(iter(train_data))
    with torch.no_grad():
        current = model.full_sort_predict(batch)
        model.param_age = 1
        aged = model.full_sort_predict(batch)
    assert not torch.allclose(current, aged)  # the age changes what the generator reads
    with torch.no_grad():
        model.param_age = 0
        torch.testing.assert_close(model.full_sort_predict(batch), current, atol=0, rtol=0)


def test_training_reads_the_current_window_whatever_the_age(tiny_config_dict):
    _, _, model = build_pipeline({**tiny_config_dict, "duet_param_age": 4})
    lengths = torch.tensor([1, 4, 5, 8])
    model.train()
    end, has_window = model.window_end(lengths)
    assert torch.equal(end, lengths) and has_window is None
    model.eval()
    end, has_window = model.window_end(lengths)
    assert end.tolist() == [1, 1, 1, 4] and has_window.tolist() == [False, False, True, True]


def test_training_ages_each_window_by_a_draw_from_0_to_train_param_age(tiny_config_dict):
    """``train_param_age: n``: every device's window ends ``0 .. n`` interactions early, drawn per device; a device
    whose draw reaches its whole history trains with the global layers (``has_window`` False)."""
    _, _, model = build_pipeline({**tiny_config_dict, "train_param_age": 3})
    model.train()
    lengths = torch.full((2000,), 20)
    torch.manual_seed(0)
    end, has_window = model.window_end(lengths)
    assert sorted(set((lengths - end).tolist())) == [0, 1, 2, 3]  # every age drawn, none beyond 3
    assert has_window.all()
    short = torch.tensor([1, 2] * 500)
    end, has_window = model.window_end(short)
    assert torch.equal(end[~has_window], torch.ones_like(end[~has_window]))  # a valid length, though unused
    assert ((short - end)[has_window] < short[has_window]).all()  # a kept window holds an item
    assert (~has_window).any() and has_window.any()


def test_a_training_age_leaves_evaluation_on_the_current_window(tiny_config_dict):
    _, _, model = build_pipeline({**tiny_config_dict, "train_param_age": 5})
    model.eval()
    lengths = torch.tensor([1, 4, 8])
    end, has_window = model.window_end(lengths)
    assert torch.equal(end, lengths) and has_window is None
