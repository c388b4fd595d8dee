"""The memory guard: a clip whose forward pass would not fit in memory is refused before it runs.

Attention memory grows with the square of a clip's frames: ten minutes of audio through a tiny
two-layer WavLM grew past 23 GB and was killed by the kernel without a word. Each backbone
estimates the peak memory of its forward pass on one clip (`Backbone.peak_memory_bytes`), and
`check_forward_memory` compares that with the budget: `--memory-budget` or `$SER_MEMORY_BUDGET`
("2GiB", "500MB", bytes), else DEFAULT_FRACTION of the memory available (MemAvailable and the
cgroup's limit for the CPU, free memory on a GPU). A clip over budget is skipped like bad audio,
with the --max-seconds that would fit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser.errors import AudioError, UserInputError
from ser.features.backbone import SAMPLE_RATE, Backbone

DEFAULT_FRACTION = 0.7  # of the available memory; the rest is the reader's and writer's queues, and slack
BUDGET_ENV = "SER_MEMORY_BUDGET"
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """'2GiB' → 2147483648, '500MB' → 500000000, '1.5g' → 1500000000, '1024' → 1024 (bytes)."""
    if isinstance(text, int):
        return text
    match = _SIZE.fullmatch(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise UserInputError(f"{text!r} is not a memory size", "write it like 2GiB, 500MB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(num_bytes: float) -> str:
    """1.5 GiB, 320 MiB, 12 KiB."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= size:
            return f"{num_bytes / size:.1f} {unit}"
    return f"{int(num_bytes)} B"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_headroom() -> int | None:
    """Bytes this process's cgroup may still use (v2, else v1), None without a limit."""
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        cap, used = _read_int(Path("/sys/fs/cgroup") / limit), _read_int(Path("/sys/fs/cgroup") / usage)
        if cap is not None and used is not None and cap < 2**60:  # v1 says "no limit" with a huge number
            return max(cap - used, 0)
    return None


def available_memory(device: str = "cpu") -> int:
    """Free memory on a GPU; MemAvailable (capped by the cgroup's headroom) for the CPU."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    available = None
    try:
        with open("/proc/meminfo") as info:
            available = next((int(line.split()[1]) * 1024 for line in info if line.startswith("MemAvailable:")), None)
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    headroom = _cgroup_headroom()
    return available if headroom is None else min(available, headroom)


def memory_budget(setting: str | int | None = None, device: str = "cpu") -> int:
    """Bytes one forward pass may use: `setting`, else $SER_MEMORY_BUDGET, else DEFAULT_FRACTION of
    `available_memory(device)` (on the CPU shared among the torchrun ranks of this machine)."""
    setting = setting if setting is not None else (os.environ.get(BUDGET_ENV) or None)
    if setting is not None:
        return parse_size(setting)
    budget = int(DEFAULT_FRACTION * available_memory(device))
    if not str(device).startswith("cuda"):
        budget //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return budget


def longest_fitting_seconds(backbone: Backbone, budget: int, num_samples: int) -> int:
    """The most whole seconds (below the clip's) whose forward fits `budget` (0 when none does);
    the estimate grows with the clip, so a bisection finds it."""
    low, high = 0, num_samples // SAMPLE_RATE
    while low < high:
        middle = (low + high + 1) // 2
        if backbone.peak_memory_bytes(middle * SAMPLE_RATE) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def check_forward_memory(backbone: Backbone, utt_id: str, num_samples: int, budget: int) -> None:
    """Raise AudioError (skip or fail, as bad audio) when the forward pass on this clip alone would
    need more than `budget` bytes; say how to crop it."""
    needed = backbone.peak_memory_bytes(num_samples)
    if needed <= budget:
        return
    fits = longest_fitting_seconds(backbone, budget, num_samples)
    advice = f"crop with --max-seconds {fits} (or raise --memory-budget)" if fits else "raise --memory-budget"
    raise AudioError(
        utt_id,
        f"needs ≈{format_size(needed)} for its {backbone.num_frames(num_samples)} frames "
        f"({num_samples / SAMPLE_RATE:.0f} s), over the {format_size(budget)} memory budget: {advice}",
        f"--memory-budget (or ${BUDGET_ENV}) sets the budget; the default is {DEFAULT_FRACTION:.0%} of available memory",
    )
