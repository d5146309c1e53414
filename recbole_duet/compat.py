"""Compatibility shims that let RecBole 1.2.1 run on today's numpy.

RecBole's ``Config.compatibility_settings`` re-creates numpy aliases removed in numpy 1.24/2.0 and reads
``np.float_`` and friends, which numpy 2 deleted too, so ``Config()`` dies before doing anything. Its
evaluator and hyper-tuning code then use ``np.float``, ``np.bool`` and ``np.str``. We install the same
aliases from builtins and numpy's surviving scalar types, never touching RecBole's files on disk.
"""

import numpy as np

_NUMPY_ALIASES = {
    "bool": np.bool_,
    "int": np.int_,
    "float": np.float64,
    "complex": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
}


def install_numpy_aliases():
    """Define the removed numpy aliases RecBole 1.2.1 reads (idempotent, only where missing)."""
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
