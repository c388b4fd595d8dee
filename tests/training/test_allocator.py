"""Freed blocks kept in the heap: counted in page faults of real processes (glibc's thresholds are per process)."""

import os
import subprocess
import sys

import pytest

from ser.training.allocator import is_glibc

pytestmark = pytest.mark.skipif(not is_glibc(), reason="mallopt's thresholds are glibc's")

# Fills a 256 MiB tensor fourteen times, each freed at once; prints the minor page faults of the
# last two. `{setup}` runs first, in the same process. The first fills of a kept heap may still
# grow it: torch asks for 64-byte aligned blocks, glibc cuts a small remainder off each one and
# parks it in its per-thread cache (up to 7 per size), where it separates the freed block from
# the free space after it; measured, the heap stopped growing after at most 7 fills.
FAULTS = """
import resource, sys, torch
{setup}
torch.ones(1).add_(1)  # torch's own start-up allocations
def fill():
    torch.empty(64 * 1024 * 1024).fill_(1.0)
for _ in range(12):
    fill()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fill(); fill()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
KEEP = "from ser.training.allocator import keep_freed_blocks\nprint(keep_freed_blocks(), file=sys.stderr)"
CLI = """from ser.cli import main
sys.argv = ["ser", "--help"]
try:
    main()
except SystemExit:
    pass"""
PAGES = 2 * 256 * 1024 * 1024 // 4096  # 4 KiB pages of the two timed fills
THRESHOLD_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE")


def page_faults(setup: str = "", **env: str) -> tuple[int, str]:
    """(minor faults of the two timed fills, stderr) of a fresh process."""
    environment = {name: value for name, value in os.environ.items() if name not in THRESHOLD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", FAULTS.format(setup=setup)], capture_output=True, text=True,
                          check=True, env={**environment, **env})
    return int(done.stdout.strip().splitlines()[-1]), done.stderr


def test_kept_blocks_are_reused_without_faulting_in_again():
    faults, _ = page_faults()
    assert faults >= PAGES  # glibc maps each 256 MiB block afresh: every page faults again
    faults, stderr = page_faults(KEEP)
    assert stderr.strip() == "True"
    assert faults < PAGES // 20


def test_the_cli_keeps_freed_blocks():
    faults, _ = page_faults(CLI)
    assert faults < PAGES // 20


def test_a_threshold_the_user_set_is_kept():
    faults, stderr = page_faults(KEEP, MALLOC_MMAP_THRESHOLD_=str(128 * 1024))
    assert stderr.strip() == "False"
    assert faults >= PAGES
    faults, _ = page_faults(CLI, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=131072")
    assert faults >= PAGES


# A fold-like loop under the kept-block settings: each "step" holds a few large numpy and torch
# arrays of varying sizes at once and frees them; the end-of-fold hook must hand the heap back.
FOLD = """
import json, numpy as np, torch
from ser.training.allocator import PhaseMemory, keep_freed_blocks, rss_bytes
assert keep_freed_blocks()
torch.ones(1).add_(1)
np.ones(1).sum()
before = rss_bytes()
with PhaseMemory() as memory:
    for step in range(6):
        held = [np.ones((24 + step) * 1024 * 1024 // 8), torch.ones((40 + 3 * step) * 1024 * 1024 // 4),
                np.random.default_rng(step).standard_normal((32 - step) * 1024 * 1024 // 8)]
        held.append(torch.from_numpy(held[0]) * 2)
        del held
print(json.dumps({"before": before, **memory.figures}))
"""


def test_the_end_of_a_fold_hands_kept_memory_back():
    environment = {name: value for name, value in os.environ.items() if name not in THRESHOLD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", FOLD], capture_output=True, text=True, check=True, env=environment)
    import json

    figures = json.loads(done.stdout.strip().splitlines()[-1])
    kept = figures["end_rss_before_trim_bytes"] - figures["before"]
    assert kept > 64 * 1024 * 1024  # the loop left freed blocks in the heap: the hook has work to do
    assert figures["peak_rss_bytes"] >= figures["end_rss_before_trim_bytes"]
    assert figures["end_rss_bytes"] <= 1.25 * figures["before"]
