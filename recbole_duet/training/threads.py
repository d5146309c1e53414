"""torch's CPU threads, balanced against what else the machine is running, before every training epoch.

torch runs its CPU kernels on one OpenMP thread per core, and GNU OpenMP's threads busy-wait at every barrier
before they sleep. Beside another CPU-bound job, one of them is off its core while the others spin waiting for
it, and a training with torch's default threads runs far slower than with one thread (issue 32;
``benchmarks/busy_machine.py`` measures it side by side). Threads that sleep while they wait
(``OMP_WAIT_POLICY=PASSIVE``) hold up beside a job but cost the idle machine every wake-up, and a shorter spin
does not help. So the trainer asks, before each epoch, how many threads are runnable elsewhere on the machine
and gives torch the cores that are left (at least one): all of them on an idle machine, where spinning is
fastest, and one fewer for each other busy thread. A count the user fixed (``OMP_NUM_THREADS``) is kept.
"""

import os
import statistics
import time
from logging import getLogger

import torch

SAMPLES = 5
SAMPLE_INTERVAL_S = 0.01


def procs_running():
    """Threads the kernel has runnable right now, this one included (``/proc/stat``); None where unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if line.startswith("procs_running "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def busy_elsewhere(read=procs_running, samples=SAMPLES, interval_s=SAMPLE_INTERVAL_S, sleep=time.sleep):
    """Runnable threads other than the one asking: the median of a few readings, less this thread. Taken between
    epochs, when this process's other threads wait; the pause before each reading lets their spin end."""
    readings = []
    for _ in range(samples):
        sleep(interval_s)
        reading = read()
        if reading is None:
            return None
        readings.append(reading - 1)
    return max(0, int(statistics.median_low(readings)))


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def balanced_thread_count(cores, others):
    """The cores no other runnable thread is using, and at least one."""
    return max(1, cores - others)


def balance_threads(environ=os.environ, busy=busy_elsewhere, cores=usable_cores):
    """Set torch's intra-op threads to the cores left free; keep a count fixed by ``OMP_NUM_THREADS``.

    Returns:
        int or None: the thread count set, or None when the count was left as it was.
    """
    if environ.get("OMP_NUM_THREADS"):
        return None
    others = busy()
    if others is None:
        return None
    available = cores()
    threads = balanced_thread_count(available, others)
    if threads != torch.get_num_threads():
        getLogger().info(f"torch threads: {threads} ({others} runnable elsewhere on {available} cores)")
        torch.set_num_threads(threads)
    return threads
