"""How many CPU threads a command uses, and how they wait: training that keeps its speed on a busy machine.

Measured on a shared 2-core machine (benchmarks/heads.py): OpenMP threads that spin-wait for a
core they do not get (libgomp's default: spin up to ~3 ms) made a TIM-Net step 3.8× slower with
two busy background processes; with `OMP_WAIT_POLICY=PASSIVE` a waiting thread sleeps at once
and the slowdown fell to about 2×. But sleeping at once made the recurrent heads slow on an idle
machine: an LSTM step runs thousands of small parallel regions, and waking a sleeping thread
for each (on an idle virtual CPU) made lstm@80 take 220-230 ms against 50 ms when a thread
spins about 10 µs first (`GOMP_SPINCOUNT=1000`; ctarnn@80 560 against 220 ms), while the busy
steps stayed within noise of PASSIVE for the other heads. So every command:
- sets `OMP_WAIT_POLICY=PASSIVE` and `GOMP_SPINCOUNT=1000` before torch is imported (wait
  settings the user made are kept: neither is set when either is), and
- uses as many intra-op threads as CPUs it may actually run on: the scheduler affinity mask
  and the cgroup CPU quota (a container or a Slurm job), not `os.cpu_count()` of the host —
  unless `OMP_NUM_THREADS` says otherwise (torchrun sets it to 1 per rank, and a user's choice
  is kept), or `--threads` does.
Inter-op threads are left alone: training steps run no inter-op parallel work.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# libgomp spins GOMP_SPINCOUNT rounds (~100 per µs) before a waiting thread sleeps
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`);
    None when there is no quota or no cgroup file to read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup quota (at least 1)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def prefer_brief_waits() -> None:
    """Ask OpenMP's waiting threads to spin about 10 µs, then sleep (only effective before torch
    is imported); when the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, nothing is changed."""
    if not any(name in os.environ for name in WAIT_SETTINGS):
        os.environ.update(WAIT_SETTINGS)


def default_threads() -> int:
    """`OMP_NUM_THREADS` when it holds a positive count, else `available_cpus()`."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else available_cpus()


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: `default_threads()`); returns the count used."""
    import torch

    count = default_threads() if threads is None else threads
    torch.set_num_threads(count)
    return count
