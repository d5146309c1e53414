"""Compatibility shims that let RecBole 1.2.1 run on today's numpy, scipy and pandas, quietly, never touching its
files on disk.

numpy 2: RecBole's ``Config.compatibility_settings`` re-creates numpy aliases removed in numpy 1.24/2.0 and
reads ``np.float_`` and friends, which numpy 2 deleted too, so ``Config()`` dies before doing anything. Its
evaluator and hyper-tuning code then use ``np.float``, ``np.bool`` and ``np.str``. We install the same
aliases from builtins and numpy's surviving scalar types.

scipy (1.17 here): GCMC, LightGCN, NGCF, NCL, SpectralCF (and KGIN, MCCLK) fill their adjacency matrix with
``dok_matrix._update``, the unchecked ``dict.update`` that scipy dropped when its DOK matrix stopped storing
entries in itself; they die with "'dok_matrix' object has no attribute '_update'". The DOK matrix that lacks
``_update`` has a public ``update`` doing the same with bounds checks, so it takes the old name.

pandas 3: RecBole fills missing values with ``df[col].fillna(..., inplace=True)``, which pandas 2 warns about and
pandas 3 ignores (copy-on-write: the column is a copy). Missing item or user features then stay NaN and DIN dies
with an IndexError; an empty cell of a sequence column ends in "'float' object has no attribute 'split'". The
dataset's missing-value filling is replaced with one that assigns its result, and the sequence columns of an
atomic file are read with empty strings for empty cells, as RecBole means to. RecBole also measures sequence
features with ``Series.agg(len)``, which pandas 3 no longer applies row by row; while a dataset is built it does.

Warnings: RecBole's own deprecated calls (``torch.cuda.amp``, the chained fill) warn on every run; the user can do
nothing about them, so warnings raised from RecBole's modules are not shown. The plugin's and the user's are.
"""

import functools
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
import scipy.sparse as sp
from recbole.data.dataset import SequentialDataset
from recbole.data.dataset import dataset as recbole_dataset_module
from recbole.utils import FeatureType

from recbole_duet.training.speedups import install_attention_by_history_length, install_fused_activations

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


def _fill_missing_values(self):
    """``Dataset._fill_nan`` by assignment: a missing token becomes 0 (padding), a missing float the field's mean,
    a missing sequence an empty array."""
    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            kind = self.field2type[field]
            if kind == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(0)
            elif kind == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(feat[field].mean())
            else:
                empty = np.array([], dtype=np.int64 if kind == FeatureType.TOKEN_SEQ else np.float64)
                feat[field] = [empty if isinstance(value, float) else value for value in feat[field]]


class _PandasReadingEmptySequences:
    """pandas as ``Dataset._load_feat`` sees it: ``read_csv`` gives an empty string for an empty cell of a
    sequence column (header ``name:token_seq`` / ``name:float_seq``) instead of NaN, which RecBole then splits."""

    def __getattr__(self, name):
        return getattr(pd, name)

    @staticmethod
    def read_csv(*args, **kwargs):
        frame = pd.read_csv(*args, **kwargs)
        for column in frame.columns:
            if str(column).endswith("seq"):
                frame[column] = frame[column].fillna("")
        return frame


@contextmanager
def _empty_sequence_cells_as_empty_strings():
    recbole_dataset_module.pd = _PandasReadingEmptySequences()
    try:
        with warnings.catch_warnings():  # RecBole's chained fill of those cells has nothing left to do
            warnings.filterwarnings("ignore", message=".*chained assignment", category=Warning)
            yield
    finally:
        recbole_dataset_module.pd = pd


@contextmanager
def _sequence_lengths_by_row():
    """``Series.agg(len)`` as RecBole means it, the length of each row's sequence: pandas 3 returns the length of
    the column instead, and every token_seq/float_seq feature fails to load ("Length of values (1) does not
    match length of index"). Only while RecBole builds a dataset."""
    agg = pd.Series.agg

    def agg_by_row(series, func=None, *args, **kwargs):
        return series.map(len) if func is len else agg(series, func, *args, **kwargs)

    pd.Series.agg = agg_by_row
    try:
        yield
    finally:
        pd.Series.agg = agg


def _run_method_inside(owner, name, context):
    """Make ``owner.name`` run inside ``context()`` (once, however often the shims are installed)."""
    method = getattr(owner, name)
    if getattr(method, "mended_by_recbole_duet", False):
        return

    @functools.wraps(method)
    def mended(*args, **kwargs):
        with context():
            return method(*args, **kwargs)

    mended.mended_by_recbole_duet = True
    setattr(owner, name, mended)


def install_pandas_mends():
    """RecBole's datasets on pandas 2 and 3: missing values filled by assignment, empty sequence cells read as
    empty, sequence lengths taken row by row."""
    dataset_class = recbole_dataset_module.Dataset
    dataset_class._fill_nan = _fill_missing_values
    _run_method_inside(dataset_class, "_load_feat", _empty_sequence_cells_as_empty_strings)
    _run_method_inside(dataset_class, "_from_scratch", _sequence_lengths_by_row)
    _run_method_inside(SequentialDataset, "_benchmark_presets", _sequence_lengths_by_row)


def silence_recbole_warnings():
    """Hide the warnings raised from lines of RecBole's modules: torch's and pandas' deprecations of the calls
    RecBole makes (``torch.cuda.amp``, ``torch.sparse.FloatTensor``, chained fills, read-only arrays from pandas
    3). The plugin's warnings and the user's stay."""
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"recbole\.")


def install_compatibility():
    """Every shim above, RecBole's activations as fused kernels and its target attention by history length
    (:mod:`recbole_duet.training.speedups`); called by the plugin's Config before RecBole reads anything, so every
    model it builds gets them."""
    install_numpy_aliases()
    install_dok_update()
    install_pandas_mends()
    silence_recbole_warnings()
    install_fused_activations()
    install_attention_by_history_length()
