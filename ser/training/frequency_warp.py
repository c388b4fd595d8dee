"""`--frequency-warp A`: vocal-tract-length-style warping of cached log-mel frames, in training only.

Each training utterance's mel-channel axis is resampled at c·a (linear interpolation between
neighbouring channels; beyond the top channel, the top channel), with one factor a per utterance
and epoch drawn uniformly from [1 − A, 1 + A] and seeded by (run seed, epoch), so a resumed run
draws the same ones. A voice's formants then sit up to A higher or lower, as another speaker's
would: a few training voices stand in for more. Only log-mel caches (fbank: channels in mel
order) have that axis; dev, test and `ser predict` see the frames as cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ser.errors import UserInputError
from ser.features.cache import read_attrs

LOG_MEL_SOURCE = "ser:fbank"
MAX_WARP = 0.5  # a ≥ 0.5 would fold half the mel axis onto its top channel
WARP_STREAM = 7  # keeps these draws apart from the batch order's, which is seeded by (seed, epoch) too


def warped_channels(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """x (B, L, T, D) → each utterance's channel c read at c·factor (factors (B,)); padding stays 0."""
    batch, layers, frames, channels = x.shape
    source = torch.arange(channels, device=x.device, dtype=torch.float32)[None] * factors[:, None]  # (B, D)
    source = source.clamp(max=channels - 1)
    below = source.floor().long()  # (B, D)
    above = (below + 1).clamp(max=channels - 1)
    weight = (source - below).to(x.dtype)[:, None, None, :]  # (B, 1, 1, D)

    def read(index: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, 3, index[:, None, None, :].expand(batch, layers, frames, channels))  # (B, L, T, D)

    return read(below) * (1 - weight) + read(above) * weight


@dataclass(frozen=True)
class FrequencyWarp:
    """One epoch's warp: a factor per row of the training data."""

    factors: torch.Tensor  # (N,) float32

    @classmethod
    def for_epoch(cls, max_warp: float, seed: int, epoch: int, rows: int) -> "FrequencyWarp":
        draws = np.random.default_rng([seed, epoch, WARP_STREAM]).uniform(1 - max_warp, 1 + max_warp, rows)
        return cls(torch.from_numpy(draws).float())

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """x (B, L, T, D) of the rows `index` (B,) → warped x."""
        return warped_channels(x, self.factors.to(x.device)[index])


def check_frequency_warp(max_warp: float, cache_path: Path) -> None:
    """A one-line UserInputError unless `max_warp` is 0 (off) or in (0, 0.5) with a cache of log-mel frames."""
    if max_warp == 0:
        return
    if not 0 < max_warp < MAX_WARP:
        raise UserInputError(f"--frequency-warp {max_warp:g} is outside [0, {MAX_WARP:g})",
                             "e.g. --frequency-warp 0.1 (factors 0.9-1.1)")
    source = str(read_attrs(Path(cache_path)).get("source") or "")
    if source != LOG_MEL_SOURCE:
        raise UserInputError(f"--frequency-warp needs log-mel frames (an fbank cache); {cache_path} holds "
                             f"{source or 'unknown'} features, which have no mel-channel axis",
                             "drop --frequency-warp, or train from `ser extract --model fbank`")
