"""Hyper-parameter search (``run_hyper.py``, ``pip install "recbole-duet[hyper]"``).

* :mod:`recbole_duet.search.hyper_tuning`: RecBole's ``HyperTuning`` on today's hyperopt, with a grid-walking
  exhaustive search;
* :mod:`recbole_duet.search.optuna_search`: the same search space on Optuna: shared studies, workers, pruning;
* :mod:`recbole_duet.search.choices`: its samplers and pruners, for the command line without optuna.

Each trial is one :func:`recbole_duet.quick_start.objective_function` run.
"""
