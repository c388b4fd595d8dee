"""Load a corpus's targets and features once (`load_training_data`): the manifest's usable rows,
checked against the cache, in memory or streamed (automatic when the cache would not fit in RAM).

With `unlabelled=True` the rows the task has no target for (e.g. utterances without ratings)
are kept after the labelled ones, for a teacher to label (distillation); folds are only ever
made from the labelled rows. With `test_manifest=` a second corpus is loaded for cross-corpus
testing (cross_corpus.py). With `per_speaker=True` every batch is scaled by its speaker's own
statistics over the loaded rows (speaker_norm.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ser.data.manifest import read_manifest
from ser.errors import UserInputError
from ser.features.cache import CacheReader
from ser.training.allocator import give_back_memory
from ser.training.cache_access import available_ram_bytes, cached_rows, feature_home, resolve_device
from ser.training.cross_corpus import load_cross_corpus_data
from ser.training.speaker_norm import speaker_of_rows
from ser.training.streaming import STREAM_WORKERS
from ser.training.tasks import Task, build_task
from ser.training.training_data import TrainingData


def load_training_data(
    manifest: Path,
    cache: Path,
    task: str = "categorical",
    layers: list[int] | None = None,
    device: str = "auto",
    stream: bool | None = None,
    workers: int = STREAM_WORKERS,
    test_manifest: Path | None = None,
    test_cache: Path | None = None,
    label_map: dict[str, str | None] | None = None,
    unlabelled: bool = False,
    per_speaker: bool = False,
) -> TrainingData:
    """Read the manifest's targets and the cache's features once (`stream=None`: decide by size).

    With `test_manifest` (and its `test_cache`) the test corpus is loaded too, labels mapped by
    `label_map` (see `load_cross_corpus_data`). `unlabelled=True` also keeps the rows without
    targets, after the labelled ones. `per_speaker=True` scales each speaker's frames by its own
    mean and std (the manifest must name every loaded row's speaker)."""
    if per_speaker and test_manifest is not None:
        raise UserInputError("--per-speaker is not available with --test-manifest",
                             "cross-corpus runs standardise with the training corpus's statistics only")
    if test_manifest is not None:
        if test_cache is None:
            raise UserInputError("a test manifest needs its cache")
        if stream:
            raise UserInputError("--stream is not available with --test-manifest",
                                 "cross-corpus training keeps both caches in memory")
        return load_cross_corpus_data(manifest, cache, test_manifest, test_cache, task, layers, device, label_map)
    if label_map:
        raise UserInputError("--label-map applies to the test corpus of --test-manifest only", "add --test-manifest")
    df = read_manifest(manifest)
    fitted = build_task(task, df)
    target_device = resolve_device(device)
    labelled_rows = fitted.usable(df)
    rows = pd.concat([labelled_rows, df.drop(labelled_rows.index)]) if unlabelled else labelled_rows
    if per_speaker:
        speaker_of_rows(rows)  # a row without a speaker is refused before the cache is read
    with CacheReader(cache) as reader:
        table = cached_rows(reader, cache, manifest, df, rows, layers)
        labelled = int(table["id"].isin(labelled_rows["id"]).sum())
        num_layers = len(layers) if layers else reader.num_layers
        ids = list(table["id"])
        lengths = np.array([reader.lengths[utt] for utt in ids], dtype=np.int64)
        size_bytes = int(lengths.sum()) * num_layers * reader.dim * 2  # fp16
        if stream is None:
            stream = size_bytes > 0.8 * available_ram_bytes()
        packed = None
        if not stream:
            packed = reader.load_all(ids=ids, layers=layers, device=feature_home(size_bytes, target_device))
        dim = reader.dim
    give_back_memory()  # the load's temporaries (read buffers, the index) are not reused by training
    data = TrainingData(
        ids=ids, table=table, task=fitted, targets=_targets(fitted, table, labelled).to(target_device),
        lengths=lengths, num_layers=num_layers, dim=dim, layers=layers, device=target_device,
        cache_path=Path(cache), packed=packed, workers=workers, labelled=labelled if unlabelled else None,
    )
    if not per_speaker:
        return data
    return dataclasses.replace(data, speaker_scaler=data.fit_speaker_scaler(speaker_of_rows(table)[0]))


def _targets(task: Task, table: pd.DataFrame, labelled: int) -> torch.Tensor:
    """Targets of the first `labelled` rows, then NaN (regression) or -1 (classes) for the rest."""
    known = task.targets(table.iloc[:labelled])  # (labelled, …)
    blank = torch.full((len(table) - labelled, *known.shape[1:]), -1 if not known.is_floating_point() else
                       float("nan"), dtype=known.dtype)
    return torch.cat([known, blank])
