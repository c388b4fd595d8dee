"""Worker processes of a training job: when forking them is safe, and how they die with their parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import torch

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def fork_is_safe(device: torch.device, streamed: bool, threads: int) -> bool:
    """Whether workers may be forked from this process: they then start in milliseconds with the
    loaded cache already in their memory. Safe for one-thread workers on a CPU cache held in
    memory; not after CUDA started, with an OpenMP pool of several threads in the workers, with an
    HDF5 file open for streaming, or off Linux."""
    return (sys.platform.startswith("linux") and threads == 1 and device.type == "cpu" and not streamed
            and not torch.cuda.is_initialized())


def die_with_parent(parent_pid: int | None) -> None:
    """In a worker: be SIGKILLed when the parent dies; exit now if it has already died. SIGINT is
    left to the parent, which stops the workers itself; SIGTERM ends the worker (a forked worker
    would otherwise keep the parent's handler)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(1)
