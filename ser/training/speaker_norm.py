"""Speaker normalisation (`--per-speaker`): every speaker's features z-scored with that speaker's
own per-layer, per-channel mean and std, over all of the speaker's frames in the run's rows.

The test speakers' statistics come from their own unlabelled audio (transductive, as in many SER
papers): a model trained so needs a new speaker's statistics before it can predict, so `ser
predict`, `ser serve` and `ser export` refuse such a run. The probe (`ser probe --per-speaker`)
normalises the pooled statistics the same way, from the cache's pooled rows and frame counts alone,
so that the floor sees what the heads see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from ser.errors import UserInputError

MIN_STD = 1e-5  # a channel that never moves for a speaker is centred, not blown up


def speaker_of_rows(table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """(speaker index of each row (N,), the speakers in first-seen order); refuses rows without one."""
    if "speaker" not in table.columns:
        raise UserInputError("--per-speaker needs each utterance's speaker: the manifest has no speaker column",
                             "add a speaker column to the manifest, or train without --per-speaker")
    speakers = table["speaker"]
    blank = speakers.isna() | (speakers.astype(str).str.strip() == "")
    if blank.any():
        first = table["id"][blank].iloc[0]
        raise UserInputError(f"--per-speaker needs each utterance's speaker: {int(blank.sum())} row(s) have none, "
                             f"e.g. {first!r}", "fill in their speaker column, or train without --per-speaker")
    codes, names = pd.factorize(speakers.astype(str))
    return codes.astype(np.int64), list(names)


def mean_and_std(total: torch.Tensor, squares: torch.Tensor, frames) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 mean and std (at least MIN_STD) from float64 sums of frames and of their squares over
    `frames` frames (a number, or a tensor that broadcasts against the sums)."""
    mean = total / frames
    std = (squares / frames - mean.pow(2)).clamp_min(0).sqrt().clamp_min(MIN_STD)
    return mean.float(), std.float()


def z_scored(x: torch.Tensor, lengths: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """x (B, L, T, D) as (x - mean) / std, with mean and std (B or 1, L, D); padding stays exactly zero."""
    valid = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]  # (B, T)
    x = (x - mean[:, :, None, :]) / std[:, :, None, :]
    return x * valid[:, None, :, None]


@dataclass(frozen=True)
class SpeakerScaler:
    """Scales each row's frames (x - mean[s]) / std[s] with its speaker s; padding stays exactly zero."""

    speaker_of_row: torch.Tensor  # (N,) int64 speaker index of every row of the training data
    mean: torch.Tensor  # (S, L, D)
    std: torch.Tensor  # (S, L, D)

    @classmethod
    def fit(cls, speaker_of_row: np.ndarray, lengths: np.ndarray,
            batches: Iterable[tuple[np.ndarray, torch.Tensor]]) -> "SpeakerScaler":
        """Each speaker's frame mean and std from `batches` of (row positions (B,), raw frames
        (B, L, T, D) with zero padding) that cover every row once."""
        total = squares = None
        speakers = int(speaker_of_row.max()) + 1
        for rows, x in batches:
            if total is None:
                total = torch.zeros(speakers, x.shape[1], x.shape[3], dtype=torch.float64, device=x.device)
                squares = torch.zeros_like(total)  # (S, L, D)
            index = torch.from_numpy(speaker_of_row[rows]).to(x.device)
            total.index_add_(0, index, x.sum(dim=2, dtype=torch.float64))  # padding is zero
            squares.index_add_(0, index, x.double().pow(2).sum(dim=2))
        frames = torch.from_numpy(np.bincount(speaker_of_row, weights=lengths, minlength=speakers))
        mean, std = mean_and_std(total, squares, frames.to(total.device)[:, None, None])  # frames (S, 1, 1)
        return cls(torch.from_numpy(speaker_of_row).to(total.device), mean, std)

    def to(self, device: torch.device) -> "SpeakerScaler":
        return SpeakerScaler(self.speaker_of_row.to(device), self.mean.to(device), self.std.to(device))

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """x (B, L, T, D) of the rows at positions `rows` (B,), scaled by their speakers' statistics
        (all on the scaler's device)."""
        index = self.speaker_of_row[rows]  # (B,)
        return z_scored(x, lengths, self.mean[index], self.std[index])  # statistics (B, L, D) each


def per_speaker_pooled(pooled: np.ndarray, lengths: np.ndarray, speaker_of_row: np.ndarray) -> np.ndarray:
    """Pooled rows (N, 2, D) (each utterance's frame mean and population std) as they would be
    pooled from frames z-scored per speaker: a speaker's frame statistics follow exactly from its
    utterances' means, stds and frame counts (E[x²] = std² + mean²), so no frame is read."""
    pooled = pooled.astype(np.float64)
    means, stds = pooled[:, 0], pooled[:, 1]  # (N, D) each
    weights = lengths.astype(np.float64)[:, None]
    out = np.empty_like(pooled)
    for speaker in np.unique(speaker_of_row):
        rows = speaker_of_row == speaker
        frames = weights[rows].sum()
        mean = (weights[rows] * means[rows]).sum(axis=0) / frames  # (D,)
        second = (weights[rows] * (stds[rows] ** 2 + means[rows] ** 2)).sum(axis=0) / frames
        std = np.sqrt(np.clip(second - mean**2, 0, None)).clip(MIN_STD)
        out[rows, 0] = (means[rows] - mean) / std
        out[rows, 1] = stds[rows] / std
    return out.astype(np.float32)
