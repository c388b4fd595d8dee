"""Freed memory stays in the process: a training step's large tensors are not faulted in afresh each step.

A CPU training step allocates and frees the same large tensors every time: a stacked model's
(K, N, 4D) MLP activations, an attention's (K·B, H, T, T) scores, a wavlm-shaped batch
(B, 13, T, 768). glibc serves a block over its mmap threshold (at most 32 MiB) with a fresh
`mmap` and unmaps it on `free`. The next step then faults in every page again, and the kernel
zeroes each one. Raising the mmap and trim thresholds (`mallopt`) keeps freed blocks in the heap,
so the next step reuses them.
Measured with benchmarks/stacked.py (8 stacked members against 8 solo heads, ms per step):
- shiftcnn at D=80: 499 / 585 ms with freed blocks kept, 743 / 640 ms with huge pages
  (`THP_MEM_ALLOC_ENABLE=1`, the previous default), 855 / 665 ms with neither;
- at D=768 × 13 layers: 22.3 / 28.3 s, against 31.6 / 32.3 s with huge pages.
Huge pages cut the number of faults, but the kernel still zeroes every page. The price of kept
blocks is a higher peak RSS: +27% (D=80) and +54% (D=768) in that benchmark, which alternates
solo and stacked shapes; +5% in `ser demo`, +8% in an fbank sweep. Most of it is glibc's
per-thread cache: torch asks for 64-byte aligned blocks, glibc cuts a small remainder off each
and caches it, and a cached remainder keeps the freed block from merging with the free space
after it, so the first few steps grow the heap (a 256 MiB block allocated again and again grew
the RSS to 1.5-1.8 GB before it was reused). `GLIBC_TUNABLES=glibc.malloc.tcache_count=0` in the
environment avoids that (0.49 GB in that loop; 10-20% lower peak RSS in benchmarks/stacked.py at
the same speed); it must be set before the process starts, so `ser` leaves it to the user.

The kept blocks are handed back at the end of each phase (`give_back_memory`, `PhaseMemory`):
after a fold, a stacked group, and loading a cache.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap; larger ones (a cache in RAM) are still mapped
TRIM_THRESHOLD = (1 << 31) - 1  # free memory at the heap's top is kept up to 2 GiB (mallopt takes an int)
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def user_set_thresholds() -> bool:
    """Whether the environment already sets glibc's mmap or trim threshold."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return (any(name in os.environ for name in USER_SETTINGS)
            or "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables)


def is_glibc() -> bool:
    """Whether this process runs on glibc (whose mallopt thresholds this module sets)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError, TypeError):
        return False


def keep_freed_blocks() -> bool:
    """Keep freed blocks up to 1 GiB in this process's heap (glibc only; thresholds the user set
    in the environment are kept). Applies to later allocations; forked workers inherit it.
    Returns whether the thresholds were changed."""
    if not is_glibc() or user_set_thresholds():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


# Memory that comes back. The thresholds above keep up to 2 GiB of freed heap in the process
# for the next step; between phases (a fold, a stacked group, loading the cache) nothing reuses
# it, so `give_back_memory` hands every free heap page back (glibc's malloc_trim(0)) and RSS
# falls to what is still in use. `PhaseMemory` records a phase's peak and end RSS (memory.json).
def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident set (`VmHWM`: its peak since the last reset) from /proc; 0 where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Start this process's peak RSS (VmHWM) afresh from its current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def give_back_memory() -> bool:
    """Return the heap's free pages to the system (glibc's malloc_trim(0)); whether any went back."""
    if not is_glibc():
        return False
    return bool(ctypes.CDLL(None).malloc_trim(0))


class PhaseMemory:
    """`with PhaseMemory() as memory:` around a phase; afterwards `memory.figures` holds its
    start, peak and end RSS in bytes, the end measured before and after `give_back_memory`."""

    def __enter__(self) -> "PhaseMemory":
        self.peak_is_phase = reset_peak_rss()
        self.figures = {"start_rss_bytes": rss_bytes()}
        return self

    def __exit__(self, *exc) -> None:
        self.figures["peak_rss_bytes"] = rss_bytes("VmHWM")
        self.figures["end_rss_before_trim_bytes"] = rss_bytes()
        give_back_memory()
        self.figures["end_rss_bytes"] = rss_bytes()
        if not self.peak_is_phase:
            self.figures["peak_note"] = "the process's peak so far: its peak could not be reset"
