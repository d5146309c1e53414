"""Freed tensor memory kept for reuse (recbole_duet/training/allocator.py): what is set, where it is left alone, and
that a freed batch-sized block really is reused without the kernel mapping and zeroing its pages again."""

import json
import os
import subprocess
import sys

import pytest

from recbole_duet.training.allocator import (
    M_MMAP_MAX,
    M_TRIM_THRESHOLD,
    SETTINGS,
    freed_memory_kept,
    glibc,
    keep_freed_memory,
)


class FakeLibc:
    """Records mallopt's calls; answers ``result`` (glibc's 1 for success, 0 for failure)."""

    def __init__(self, result=1):
        self.result, self.calls = result, []

    def mallopt(self, parameter, value):
        self.calls.append((parameter.value, value.value))
        return self.result


def test_mmap_is_turned_off_and_trimming_held_back_here_and_for_processes_started_from_here():
    libc, environ = FakeLibc(), {"PATH": "/bin"}
    assert keep_freed_memory(libc, environ) is True
    assert sorted(libc.calls) == [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)]
    assert environ == {"PATH": "/bin", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "2147483647"}
    assert freed_memory_kept(environ) and not freed_memory_kept({"PATH": "/bin"})


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_value_the_user_set_leaves_the_allocator_alone(name):
    libc, environ = FakeLibc(), {name: "65536"}
    assert keep_freed_memory(libc, environ) is False
    assert libc.calls == [] and environ == {name: "65536"}


def test_a_refused_setting_changes_no_environment():
    environ = {}
    assert keep_freed_memory(FakeLibc(result=0), environ) is False
    assert environ == {}


REUSE = """
import json, resource, sys, torch
from recbole_duet.training.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "kept" else False
faults = []
for batch in range(16):  # glibc's aligned allocations leave a few blocks unreused at first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    activations = torch.ones(16 * 2**20)  # 64 MiB, above glibc's largest mmap threshold, freed at the batch's end
    del activations
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


@pytest.mark.skipif(glibc() is None, reason="the allocator setting is glibc's")
def test_a_freed_block_is_reused_without_faulting_its_pages_in_again():
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}

    def run(setting):
        command = [sys.executable, "-c", REUSE, setting]
        return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)

    default, kept = run("default"), run("kept")
    assert kept["applied"] and not default["applied"]
    assert min(default["faults"]) >= 32  # every batch mapped afresh: 16,384 pages of 4 KiB (32 huge pages)
    assert max(kept["faults"][-4:]) * 10 <= min(default["faults"])  # the freed blocks' pages, reused


def test_the_benchmark_reports_medians_and_the_ratio_of_kept_over_default():
    from benchmarks.allocator import build_parser, report

    def phases(seconds):
        phase = {"seconds": seconds, "user_seconds": 1.0, "system_seconds": 0.5, "minor_faults": 1000}
        return {"train epoch": phase, "validation": {**phase, "seconds": seconds / 10}}

    args = build_parser().parse_args(["--models", "DIN", "--rounds", "3"])
    default, kept = [phases(s) for s in (10.0, 30.0, 12.0)], [phases(s) for s in (6.0, 9.0, 3.0)]
    timings = {"DIN": {"default": default, "kept": kept}}
    lines, ratios = report(timings, args, "a machine")
    assert ratios == pytest.approx({"DIN, train epoch": 6.0 / 12.0, "DIN, validation": 0.6 / 1.2})
    assert "| DIN | train epoch | kept | 6.0 | 1.0 | 0.5 | 1,000 | 0.50 |" in lines
