"""Checkpoints that are written atomically and load with ``torch.load(..., weights_only=True)``.

RecBole 1.2.1 pickles its whole Config into every checkpoint, which torch >= 2.6 refuses to load by default
(and which would execute arbitrary code if it did). Ours hold tensors and plain values only: the config is
stored as a JSON string. A checkpoint is written to a temporary file beside its target, flushed to disk,
then renamed over it, so a crash leaves either the old file or the new one, never a torn one.
"""

import json
import os
import tempfile

import numpy as np
import scipy.sparse as sp
import torch

from recbole_duet.errors import CheckpointError

CHECKPOINT_FORMAT = "recbole-duet-checkpoint-v1"


def config_to_json(config):
    """Serialise a RecBole Config's values; enums, devices and other objects become their ``str``."""
    return json.dumps(config.final_config_dict, default=str, sort_keys=True)


def encode_other_parameters(parameters):
    """A model's ``other_parameter()`` with numpy arrays and scipy sparse matrices stored as tensors.

    RecBole's non-neural models keep what they learnt there (ItemKNN's similarity matrix, EASE's item weights),
    and pickled numpy/scipy objects are not allowed by ``weights_only=True``.
    """
    return {name: _encode(value) for name, value in parameters.items()}


def decode_other_parameters(parameters):
    """Inverse of :func:`encode_other_parameters`."""
    return {name: _decode(value) for name, value in (parameters or {}).items()}


def _encode(value):
    if isinstance(value, np.ndarray):
        return {"numpy": torch.from_numpy(np.ascontiguousarray(value))}
    if sp.issparse(value):
        csr = value.tocsr()
        arrays = {key: torch.from_numpy(getattr(csr, key)) for key in ("data", "indices", "indptr")}
        return {"scipy_sparse": value.format, "shape": list(csr.shape), **arrays}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict) and "numpy" in value:
        return value["numpy"].numpy()
    if isinstance(value, dict) and "scipy_sparse" in value:
        arrays = tuple(value[key].numpy() for key in ("data", "indices", "indptr"))
        return sp.csr_matrix(arrays, shape=tuple(value["shape"])).asformat(value["scipy_sparse"])
    return value


def save_checkpoint(state, path):
    """Atomically write ``state`` (a dict of tensors and plain values) to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_checkpoint(path, map_location=None):
    """Load a checkpoint without unpickling code; raise :class:`CheckpointError` naming the file if unusable."""
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file '{path}' does not exist.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"Checkpoint file '{path}' cannot be loaded safely (torn file, or not a recbole-duet checkpoint "
            f"holding tensors and plain values only): {error}"
        ) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"Checkpoint file '{path}' is not a {CHECKPOINT_FORMAT} file.")
    return checkpoint
