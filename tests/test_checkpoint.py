"""Checkpoints: plain tensors only, atomic writes, clear errors on bad files."""

import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_duet.errors import CheckpointError
from recbole_duet.training.checkpoint import (
    decode_other_parameters,
    encode_other_parameters,
    load_checkpoint,
    save_checkpoint,
)


def test_round_trip_loads_with_weights_only(tmp_path):
    path = str(tmp_path / "model.pth")
    save_checkpoint({"state_dict": {"w": torch.arange(3.0)}, "config": "{}", "epoch": 2}, path)
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 2 and torch.equal(raw["state_dict"]["w"], torch.arange(3.0))
    assert load_checkpoint(path)["config"] == "{}"
    assert os.listdir(tmp_path) == ["model.pth"]


class _CodeInAFile:
    """Anything pickled by class reference: unpickling it would run code the file names."""


def test_a_checkpoint_holding_code_is_refused_even_where_the_environment_allows_pickle(tmp_path, monkeypatch):
    """``weights_only=True`` is passed, not left to torch's default, which this variable turns off."""
    path = str(tmp_path / "code.pth")
    torch.save({"format": "recbole-duet-checkpoint-v1", "payload": _CodeInAFile()}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="code.pth' cannot be loaded safely"):
        load_checkpoint(path)


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "model.pth")
    save_checkpoint({"epoch": 1}, path)

    def crash(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["model.pth"]


class NotATensor:
    pass


def write_torn(path):
    path.write_bytes(b"torn")


def write_pickled_object(path):
    torch.save({"format": "recbole-duet-checkpoint-v1", "object": NotATensor()}, str(path))


@pytest.mark.parametrize("write", [write_torn, write_pickled_object], ids=["torn", "pickled-object"])
def test_unsafe_or_torn_files_are_refused_naming_the_file(tmp_path, write):
    path = tmp_path / "bad.pth"
    write(path)
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_checkpoint(str(path))


def test_a_foreign_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / "recbole.pth")
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a recbole-duet-checkpoint-v1"):
        load_checkpoint(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing-here.pth"):
        load_checkpoint(str(tmp_path / "nothing-here.pth"))


@pytest.mark.parametrize("form", ["csr", "csc", "coo"])
def test_other_parameters_keep_sparse_format_shape_and_values_through_a_checkpoint(tmp_path, form):
    """What a non-neural RecBole model learnt (ItemKNN's similarity, a scipy matrix of any format) comes back the
    same: format, shape (an empty last row and column included) and entries, and a numpy array as itself."""
    matrix = sp.random(5, 4, density=0.4, format="csr", random_state=0, dtype=np.float32)
    matrix = sp.csr_matrix(np.pad(matrix.toarray(), ((0, 1), (0, 1)))).asformat(form)  # 6 x 5, last row and column empty
    dense = np.arange(6.0).reshape(2, 3)
    path = str(tmp_path / "knn.pth")
    save_checkpoint({"other_parameter": encode_other_parameters({"w": matrix, "pop": dense, "k": 3})}, path)
    loaded = decode_other_parameters(load_checkpoint(path)["other_parameter"])
    assert loaded["w"].format == form and loaded["w"].shape == (6, 5)
    np.testing.assert_array_equal(loaded["w"].toarray(), matrix.toarray())
    np.testing.assert_array_equal(loaded["pop"], dense)
    assert loaded["k"] == 3
