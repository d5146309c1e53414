"""The choices of ``--sampler`` and ``--pruner``: here rather than in :mod:`recbole_duet.search.optuna_search`
so that the command line can offer them without importing optuna."""

SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("median", "median-of-best", "hyperband", "none")
