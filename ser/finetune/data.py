"""What fine-tuning trains on: the manifest's usable utterances (raw audio, or the frozen CNN
encoder's cached output) and the batches drawn from them, formed per model family.

Batching (`resolve_batching`):
- crop: length-bucketed batches cut to their shortest member, so group-norm CNNs never see
  padding (training); evaluation runs each utterance whole and alone;
- accumulate: every utterance alone and whole, gradients summed over a batch, one optimiser step;
- pad: zero-padded batches with an attention mask; only where padding cannot change the valid
  frames: layer-norm models on raw audio, or any model but data2vec-audio from the conv cache
  (the group norm already ran on the utterance alone; data2vec's stacked positional convolutions
  leak padding whatever the mask).
Batch order depends only on (seed, epoch) (training/batching.py), so resumed runs match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from ser.data.manifest import read_manifest, utterance_records
from ser.errors import AudioError, CacheError, UserInputError
from ser.features.audio import load_audio, probe_audio
from ser.features.cache import CacheReader
from ser.features.records import UtteranceRecord
from ser.training.batching import bucketed_batches, sorted_batches
from ser.training.tasks import Task, build_task

# (inputs: waves (B, n) or conv features (B, T, C), lengths (B,) in samples or frames, targets (B, …))
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class FinetuneData:
    """Every usable utterance: ids, targets and where its input comes from, row-aligned."""

    ids: list[str]
    table: pd.DataFrame  # the usable manifest rows in `ids` order (folds are made from it)
    task: Task
    targets: torch.Tensor  # (N, …) on the CPU
    records: list[UtteranceRecord]
    frames: np.ndarray  # (N,) frames of the backbone per utterance (after max_seconds)
    max_seconds: float | None
    conv_cache: Path | None = None  # read the CNN output from here instead of decoding audio
    skipped: dict[str, str] | None = None  # id → why it is left out
    _conv_reader: CacheReader | None = field(default=None, repr=False)  # opened on first use
    cross = None  # protocol_folds' cross-corpus slot: fine-tuning has none
    labelled = None

    @property
    def labelled_table(self) -> pd.DataFrame:
        return self.table

    def positions(self, ids: list[str]) -> np.ndarray:
        where = {utt: i for i, utt in enumerate(self.ids)}
        return np.array([where[utt] for utt in ids], dtype=np.int64)

    def _reader(self) -> CacheReader:
        if self._conv_reader is None:
            self._conv_reader = CacheReader(self.conv_cache)
        return self._conv_reader

    def inputs(self, rows: np.ndarray, model, crop: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, lengths) of `rows` for `model`, cut to the shortest member when `crop`,
        else zero-padded (waves are prepared, e.g. normalised, after cutting)."""
        if self.conv_cache is not None:
            pieces = [torch.from_numpy(self._reader().read(self.ids[r])[0]) for r in rows]  # (T, C) each
        else:
            pieces = [load_audio(self.records[r], self.max_seconds) for r in rows]
        shortest = min(len(piece) for piece in pieces)
        if crop:
            pieces = [piece[:shortest] for piece in pieces]
        if self.conv_cache is None:
            pieces = [torch.from_numpy(np.ascontiguousarray(model.prepare_wave(piece), dtype=np.float32)) for piece in pieces]
        lengths = torch.tensor([len(piece) for piece in pieces], dtype=torch.long)
        x = torch.zeros(len(pieces), int(lengths.max()), *pieces[0].shape[1:])  # (B, n) or (B, T, C)
        for row, piece in enumerate(pieces):
            x[row, : len(piece)] = piece
        return x, lengths

    def training_batches(self, rows: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
        """This epoch's batches of row positions, bucketed by length."""
        return [rows[b] for b in bucketed_batches(self.frames[rows], batch_size, seed, epoch)]

    def evaluation_batches(self, rows: np.ndarray, batching: str, batch_size: int) -> list[np.ndarray]:
        """Batches of positions into `rows`: padded ones where padding is safe, else one utterance each."""
        if batching == "pad":
            return sorted_batches(self.frames[rows], batch_size)
        return [np.array([i]) for i in range(len(rows))]


def resolve_batching(requested: str, conv_cache: bool, model) -> str:
    """The batching a run uses: `auto` → pad where padding is safe (see the module doc), else crop."""
    safe = model.backbone.config.model_type != "data2vec-audio" if conv_cache else model.padding_is_safe
    if requested == "pad" and not safe:
        raise UserInputError(
            f"--batching pad would let {model.backbone.config.model_type} see padding",
            "use --batching crop or accumulate (or --conv-cache, where padding is safe for group-norm models)",
        )
    return requested if requested != "auto" else ("pad" if safe else "crop")


def load_finetune_data(manifest: Path, task: str, num_frames, max_seconds: float | None,
                       conv_cache: Path | None = None) -> FinetuneData:
    """The manifest's usable rows whose audio can be read and yields at least one frame.

    `num_frames(num_samples)` is the backbone's frame count. With `conv_cache`, lengths and
    skipped utterances come from that cache."""
    df = read_manifest(manifest)
    fitted = build_task(task, df)
    table = fitted.usable(df).reset_index(drop=True)
    records = utterance_records(table, manifest)
    skipped: dict[str, str] = {}
    frames: dict[str, int] = {}
    if conv_cache is not None:
        with CacheReader(conv_cache) as reader:
            skipped.update(reader.skipped)
            frames = {utt: reader.lengths[utt] for utt in table["id"] if utt in reader.lengths}
        missing = [utt for utt in table["id"] if utt not in frames and utt not in skipped]
        if missing:
            raise CacheError(f"{len(missing)} utterances are not in the conv cache {conv_cache}, e.g. {missing[0]}")
    else:
        for record in records:
            try:
                count = num_frames(probe_audio(record, max_seconds).num_samples)
            except AudioError as error:
                skipped[record.id] = error.reason
                continue
            if count == 0:
                skipped[record.id] = "too short for the model's CNN encoder"
            else:
                frames[record.id] = count
    keep = table["id"].isin(list(frames)).to_numpy()
    if not keep.any():
        raise UserInputError(f"no usable utterance in {manifest}", "check the audio paths and labels")
    table = table[keep].reset_index(drop=True)
    ids = list(table["id"])
    return FinetuneData(
        ids=ids, table=table, task=fitted, targets=fitted.targets(table),
        records=[record for record, kept in zip(records, keep) if kept],
        frames=np.array([frames[utt] for utt in ids], dtype=np.int64), max_seconds=max_seconds,
        conv_cache=conv_cache, skipped=skipped,
    )


def iterate(data: FinetuneData, batches: list[np.ndarray], model, crop: bool, device: torch.device) -> Iterator[Batch]:
    """(inputs, lengths, targets) on `device` for each batch of row positions."""
    for rows in batches:
        x, lengths = data.inputs(rows, model, crop)
        yield x.to(device), lengths.to(device), data.targets[torch.from_numpy(rows)].to(device)
