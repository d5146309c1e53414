"""OpenMP threads that sleep while they wait, chosen before torch loads.

torch runs its CPU kernels on one OpenMP thread per core, and GNU OpenMP's threads busy-wait (spin) at every
barrier before they sleep. On a machine where another job holds a core, the spinning threads take the CPU from
the very thread they wait for, and a training with torch's default threads runs several times slower than with
one thread (issue 32 measured it; ``benchmarks/busy_machine.py`` measures it side by side). With
``OMP_WAIT_POLICY=PASSIVE`` a waiting thread sleeps instead. OpenMP reads the policy once, when torch loads its
runtime, so the package sets it on import (the command lines, ``run_recbole_duet.py``, ``run_hyper.py`` and the
benchmark harness import it before torch), and a value the user set is kept.
"""

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting(environ=os.environ):
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is set already.

    Returns:
        bool: whether the policy in force is still open to choice, i.e. torch has not loaded its OpenMP runtime
        yet (a Python session that imported torch first keeps the policy it started with).
    """
    environ.setdefault(WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules
