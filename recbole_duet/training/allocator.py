"""Freed tensor memory kept in the process for the next batch, instead of handed back to the kernel (glibc).

glibc's malloc serves a block above its mmap threshold (at most 32 MiB on a 64-bit machine) from a mapping of its
own and unmaps it when it is freed. A batch's activations are such blocks: DIN's attention over an evaluation batch
of 4,096 rows of 20 history items is one of 84 MB. So every batch maps its activations afresh, and the kernel
faults in and zeroes each of their pages on first touch: system time on top of torch's kernels, every batch
(``benchmarks/allocator.py`` measures it). With no block served by mmap (``M_MMAP_MAX`` 0) and the heap trimmed only
above a size no batch reaches, freed blocks stay in the heap and later batches reuse their pages. The process keeps
the memory it has freed until it ends: its peak, and the few blocks' worth that aligned allocations leave unused
before the heap settles.

:func:`keep_freed_memory` sets both for this process (``mallopt``) and, through the environment glibc reads at
start-up, for the processes it starts (distributed workers, search trials). Where the user set either value
(``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_``), or the C library is not glibc, nothing changes. The command-line
runners call it; a script that drives the plugin from Python may call it first.
"""

import ctypes
import os

# mallopt's parameter numbers (glibc's malloc.h), the values set (mallopt takes a C int: 2 GiB is its largest
# threshold), and the environment names glibc reads them from at start-up.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
MMAP_MAX_VARIABLE = "MALLOC_MMAP_MAX_"
SETTINGS = {MMAP_MAX_VARIABLE: (M_MMAP_MAX, 0), "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 2**31 - 1)}


def glibc():
    """The process's C library where it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory(libc=None, environ=None):
    """Keep freed blocks in the heap for reuse, here and in processes started from here; True when applied.

    Args:
        libc: the C library to call (glibc's, found when None).
        environ: the environment to read and extend (``os.environ`` when None).
    """
    environ = os.environ if environ is None else environ
    libc = glibc() if libc is None else libc
    if libc is None or any(name in environ for name in SETTINGS):
        return False
    applied = [libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) for parameter, value in SETTINGS.values()]
    if applied != [1] * len(SETTINGS):  # mallopt answers 1 for a value it took
        return False
    environ.update({name: str(value) for name, (_, value) in SETTINGS.items()})
    return True


def freed_memory_kept(environ=None):
    """Whether this process keeps freed blocks (:func:`keep_freed_memory`, or the user's own ``MALLOC_MMAP_MAX_=0``):
    what a timing depends on, so a benchmark record names it."""
    environ = os.environ if environ is None else environ
    return environ.get(MMAP_MAX_VARIABLE) == str(SETTINGS[MMAP_MAX_VARIABLE][1])
