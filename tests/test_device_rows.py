"""A model the plugin builds encodes each distinct history once under sampled evaluation, with the scores of every
row encoded; training, distinct rows and inputs that are not ids pass through."""

import copy

import pytest
import torch
from conftest import build_pipeline

from recbole_duet.model.device_rows import deduplicate_forward_rows


class SummedHistory(torch.nn.Module):
    """A toy sequential encoder: each row's output reads that row alone; counts the rows it encodes."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 3)
        self.encoded_rows = []

    def forward(self, item_seq, item_seq_len, scale=1.0):
        self.encoded_rows.append(len(item_seq))
        return self.embedding(item_seq).sum(dim=1) * item_seq_len.unsqueeze(1) * scale


def repeated_histories():
    """Two cases of 3 rows each, as RecBole's sampled evaluation repeats a case's history on each candidate row."""
    item_seq = torch.tensor([[1, 2, 0], [3, 4, 5]]).repeat(3, 1)
    return item_seq, torch.tensor([2, 3]).repeat(3)


def test_forward_runs_once_per_distinct_history_when_evaluating():
    model = deduplicate_forward_rows(SummedHistory().eval())
    item_seq, item_seq_len = repeated_histories()
    with torch.no_grad():
        deduplicated = model(item_seq, item_seq_len)
        del model.forward  # the class's own forward
        every_row = model(item_seq, item_seq_len)
    assert model.encoded_rows == [2, 6]
    assert deduplicated.shape == every_row.shape == (6, 3)
    torch.testing.assert_close(deduplicated, every_row, atol=0, rtol=0)


def test_a_keyword_option_reaches_every_row():
    model = deduplicate_forward_rows(SummedHistory().eval())
    item_seq, item_seq_len = repeated_histories()
    with torch.no_grad():
        halved = model(item_seq, item_seq_len, scale=0.5)
        whole = model(item_seq, item_seq_len)
        model(item_seq, item_seq_len, scale=torch.tensor(0.5))  # a tensor option: every row, as given
    assert model.encoded_rows == [2, 2, 6]
    torch.testing.assert_close(halved, whole / 2, atol=0, rtol=0)


@pytest.mark.parametrize("case", ["training", "gradients", "distinct rows", "float input"])
def test_forward_keeps_every_row_outside_repeated_evaluation(case):
    model = deduplicate_forward_rows(SummedHistory().train(case == "training"))
    item_seq, item_seq_len = repeated_histories()
    if case == "distinct rows":
        item_seq, item_seq_len = item_seq[:2], item_seq_len[:2]
    if case == "float input":
        item_seq_len = item_seq_len.float()
    with torch.set_grad_enabled(case == "gradients"):
        model(item_seq, item_seq_len)
    assert model.encoded_rows == [len(item_seq)]


def test_forward_with_an_output_it_cannot_index_runs_on_every_row():
    class TupleOutput(SummedHistory):
        def forward(self, item_seq, item_seq_len):
            return (super().forward(item_seq, item_seq_len),)

    model = deduplicate_forward_rows(TupleOutput().eval())
    with torch.no_grad():
        (output,) = model(*repeated_histories())
    assert output.shape == (6, 3)
    assert model.encoded_rows[-1] == 6


def test_a_copied_model_deduplicates_with_its_own_weights():
    model = deduplicate_forward_rows(SummedHistory().eval())
    copy_of_model = copy.deepcopy(model)
    torch.nn.init.zeros_(copy_of_model.embedding.weight)
    with torch.no_grad():
        assert copy_of_model(*repeated_histories()).abs().sum() == 0
    assert copy_of_model.encoded_rows == [2] and model.encoded_rows == []


@pytest.mark.parametrize("model_name, extra", [("SASRec", {}), ("GRU4Rec", {}), ("DUET", {"backbone": "SASRec"})])
def test_sampled_evaluation_of_a_built_model_encodes_each_case_once(tiny_config_dict, model_name, extra, monkeypatch):
    """A model the plugin builds scores a uni10 validation batch (11 rows a case) as with every row encoded."""
    uni10 = {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"}
    config_dict = {**tiny_config_dict, **extra, "eval_args": uni10}
    _, (_, valid_data, _), model = build_pipeline(config_dict, model=model_name)
    model.eval()
    encoded_rows, class_forward = [], type(model).forward

    def counted(self, item_seq, item_seq_len):
        encoded_rows.append(len(item_seq))
        return class_forward(self, item_seq, item_seq_len)

    monkeypatch.setattr(type(model), "forward", counted)
    batch = next(iter(valid_data))[0]
    with torch.no_grad():
        deduplicated = model.predict(batch)
        del model.forward
        every_row = model.predict(batch)
    assert encoded_rows == [len(batch) // 11, len(batch)]
    torch.testing.assert_close(deduplicated, every_row, atol=1e-5, rtol=1e-5)
