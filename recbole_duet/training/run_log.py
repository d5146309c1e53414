"""What a run writes to its log: a file of its own, and metrics as plain numbers.

RecBole's ``init_logger`` sets logging up with ``logging.basicConfig``, which does nothing once the root logger
has handlers: a second run in the same process (a benchmark loop, a hyper-parameter search, a notebook) logs
into the first run's file and leaves its own empty. :func:`init_run_logger` takes the previous run's handlers
down first. Under numpy 2 a metric prints as ``np.float64(0.0371)``; :func:`plain_metrics` gives RecBole's
numpy 1 output back.
"""

import logging
from collections import OrderedDict

from recbole.utils import init_logger

# The handlers init_logger installed for the latest run in this process.
_run_handlers = []


def init_run_logger(config):
    """RecBole's ``init_logger`` for this run, writing to this run's own file.

    Handlers that someone else put on the root logger (a notebook's, pytest's) stay where they are.
    """
    root = logging.getLogger()
    for handler in _run_handlers:
        root.removeHandler(handler)
        handler.close()
    others = root.handlers[:]
    for handler in others:
        root.removeHandler(handler)
    try:
        init_logger(config)
    finally:
        _run_handlers[:] = root.handlers
        for handler in others:
            root.addHandler(handler)


def plain_metrics(result):
    """An evaluator result with its numpy scalars turned into Python floats (same keys, same order); a run that
    only pre-trains (S3Rec, RaCT) has no validation result (None)."""
    if result is None:
        return None
    return OrderedDict((metric, float(value)) for metric, value in result.items())
