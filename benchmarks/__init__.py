"""The benchmark harness and its analyses, run from the repository root as ``python -m benchmarks.<script>``.

``run`` trains and evaluates every model of a suite under one protocol; ``report``, ``paired`` and ``per_user``
turn its records into tables and paired confidence intervals; the other scripts each measure one thing (their
docstrings say what and how to run them). Protocol and ablation settings live in ``configs/``.
"""
