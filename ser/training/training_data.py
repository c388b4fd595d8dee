"""The loaded training data of a corpus (`TrainingData`): ids, targets and features,
row-aligned and shared by every run of a process (a sweep trains many heads on one in-memory
copy), and the batches drawn from it.

In memory: the whole cache as one `PackedFeatures` on the training device (GPU when it fits,
else RAM); a batch is one gather. Streamed: a producer thread reads batches ahead from the HDF5
file (streaming.py) and pads them with the same gather, so both give the same numbers. Loading lives in loading.py (one corpus) and
cross_corpus.py (a training and a test corpus).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from ser.errors import CacheError
from ser.features.packed import PackedFeatures
from ser.training.speaker_norm import SpeakerScaler, mean_and_std, z_scored
from ser.training.streaming import STREAM_WORKERS, stream_batches
from ser.training.tasks import Task

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (B, L, T, D), lengths (B,), targets (B, …)
Augment = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, L, T, D), row positions (B,)) → x


@dataclass(frozen=True)
class CrossCorpus:
    """How a cross-corpus TrainingData is laid out: rows [0, train_rows) are the training corpus,
    the rest the test corpus; ids are `<corpus>:<manifest id>` so that the two cannot collide."""

    train_corpus: str
    test_corpus: str
    train_rows: int
    label_map: dict[str, str | None]


@dataclass
class TrainingData:
    """Every usable utterance of a corpus: ids, targets and features, row-aligned."""

    ids: list[str]
    table: pd.DataFrame  # the usable manifest rows, in `ids` order (folds are made from its labelled rows)
    task: Task
    targets: torch.Tensor  # (N, …) on `device`; unlabelled rows hold NaN (regression) or -1 (classes)
    lengths: np.ndarray  # (N,) frames per utterance
    num_layers: int
    dim: int
    layers: list[int] | None
    device: torch.device
    cache_path: Path
    packed: PackedFeatures | None = None  # in memory; None when streamed
    workers: int = STREAM_WORKERS  # reader threads of a streamed run
    cross: CrossCorpus | None = None  # set when the test utterances come from another corpus
    labelled: int | None = None  # rows [0, labelled) have targets, the rest not; None: every row
    speaker_scaler: SpeakerScaler | None = None  # --per-speaker: every batch is first scaled per speaker

    @property
    def streamed(self) -> bool:
        return self.packed is None

    @property
    def labelled_table(self) -> pd.DataFrame:
        """The rows with targets (all of `table` unless unlabelled rows were loaded)."""
        return self.table if self.labelled is None else self.table.iloc[: self.labelled]

    @property
    def unlabelled_ids(self) -> list[str]:
        """The ids of the rows without targets (kept for a teacher to label)."""
        return [] if self.labelled is None else self.ids[self.labelled :]

    def positions(self, ids: list[str]) -> np.ndarray:
        """Row positions of `ids` (a fold's members)."""
        where = {utt: i for i, utt in enumerate(self.ids)}
        missing = [utt for utt in ids if utt not in where]
        if missing:
            raise CacheError(f"{len(missing)} utterances are not in the training data, e.g. {missing[0]}")
        return np.array([where[utt] for utt in ids], dtype=np.int64)

    def batches(self, batch_rows: list[np.ndarray], scaler: "FeatureScaler | None" = None,
                augment: Augment | None = None) -> Iterator[Batch]:
        """(x, lengths, targets) on the device for each array of row positions, in order; x first
        augmented as cached (`augment(x, rows)`, training only: frequency_warp.py), then scaled per
        speaker when the data is (`speaker_scaler`), then standardised by `scaler` when one is given."""
        for index, x, lengths in self._speaker_scaled(batch_rows, augment):
            yield (x if scaler is None else scaler(x, lengths)), lengths, self.targets[index]

    def _speaker_scaled(self, batch_rows: list[np.ndarray],
                        augment: Augment | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """`_frames` (augmented when asked), each batch scaled per speaker when the data is (the fold
        scaler's input too)."""
        for index, x, lengths in self._frames(batch_rows):
            x = x if augment is None else augment(x, index)
            yield index, (x if self.speaker_scaler is None else self.speaker_scaler(x, lengths, index)), lengths

    def _frames(self, batch_rows: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(row positions (B,), raw x (B, L, T, D), lengths (B,)) on the device, as cached."""
        if self.packed is not None:
            for rows in batch_rows:
                index = torch.from_numpy(rows).to(self.device)
                x, lengths = self.packed.batch(index)  # (B, L, T, D), (B,)
                yield index, x.to(self.device, non_blocking=True), lengths.to(self.device)
            return
        for rows, x, lengths in stream_batches(self.cache_path, self.ids, self.layers, batch_rows, self.workers,
                                               pin=self.device.type == "cuda"):
            yield torch.from_numpy(rows).to(self.device), x.to(self.device, non_blocking=True), lengths.to(self.device)

    def fit_speaker_scaler(self, speaker_of_row: np.ndarray, batch_size: int = 64) -> SpeakerScaler:
        """Each speaker's frame statistics over every row (speaker_of_row: (N,) speaker index)."""
        chunks = _in_chunks(np.arange(len(self.ids)), batch_size)
        return SpeakerScaler.fit(speaker_of_row, self.lengths,
                                 ((index.cpu().numpy(), x) for index, x, _ in self._frames(chunks)))

    def feature_scaler(self, rows: np.ndarray, batch_size: int = 64) -> "FeatureScaler":
        """Per-layer, per-channel mean and std over every frame of `rows` (a fold's training part), as
        the batches give them (scaled per speaker first, when the data is)."""
        total = torch.zeros(self.num_layers, self.dim, dtype=torch.float64, device=self.device)
        squares = torch.zeros_like(total)
        for _, x, _ in self._speaker_scaled(_in_chunks(rows, batch_size)):
            total += x.sum(dim=(0, 2), dtype=torch.float64)  # (L, D); padding is zero
            squares += x.double().pow(2).sum(dim=(0, 2))
        return FeatureScaler(*mean_and_std(total, squares, float(self.lengths[rows].sum())))


def _in_chunks(rows: np.ndarray, size: int) -> list[np.ndarray]:
    """`rows` in consecutive pieces of at most `size`: the batches of a pass over them."""
    return [rows[i : i + size] for i in range(0, len(rows), size)]


@dataclass(frozen=True)
class FeatureScaler:
    """Standardises batches (x - mean) / std per layer and channel; padding stays exactly zero."""

    mean: torch.Tensor  # (L, D)
    std: torch.Tensor  # (L, D)

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return z_scored(x, lengths, self.mean[None], self.std[None])  # (B, L, T, D)
