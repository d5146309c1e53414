"""Compatibility shims that let RecBole 1.2.1 run on today's numpy and scipy, never touching its files on disk.

numpy 2: RecBole's ``Config.compatibility_settings`` re-creates numpy aliases removed in numpy 1.24/2.0 and
reads ``np.float_`` and friends, which numpy 2 deleted too, so ``Config()`` dies before doing anything. Its
evaluator and hyper-tuning code then use ``np.float``, ``np.bool`` and ``np.str``. We install the same
aliases from builtins and numpy's surviving scalar types.

scipy (1.17 here): GCMC, LightGCN, NGCF, NCL, SpectralCF (and KGIN, MCCLK) fill their adjacency matrix with
``dok_matrix._update``, the unchecked ``dict.update`` that scipy dropped when its DOK matrix stopped storing
entries in itself; they die with "'dok_matrix' object has no attribute '_update'". The DOK matrix that lacks
``_update`` has a public ``update`` doing the same with bounds checks, so it takes the old name.
"""

import numpy as np
import scipy.sparse as sp

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


def install_dok_update():
    """Give ``scipy.sparse.dok_matrix`` back the ``_update`` RecBole's graph models call (only where missing)."""
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = sp.dok_matrix.update


def install_compatibility():
    """Every shim above; called by the plugin's Config before RecBole reads anything."""
    install_numpy_aliases()
    install_dok_update()
