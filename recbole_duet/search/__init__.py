"""Hyper-parameter search (``run_hyper.py``, ``pip install "recbole-duet[hyper]"``).

* :mod:`recbole_duet.search.hyper_tuning`: RecBole's ``HyperTuning`` on today's hyperopt, with a grid-walking
  exhaustive search;
* :mod:`recbole_duet.search.optuna_search`: the same search space on Optuna: shared studies, workers, pruning.

Each trial is one :func:`recbole_duet.quick_start.objective_function` run.
"""

# The choices of ``--sampler`` and ``--pruner``, here rather than in optuna_search so that the command line can offer
# them without importing optuna.
SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("median", "median-of-best", "hyperband", "none")
