"""Labels and features loaded once, shared by every run of a process (a sweep trains many heads
on one in-memory copy).

In memory (default): the whole cache as one `PackedFeatures` on the training device (GPU when
it fits, else RAM); a batch is one gather. Streamed (`stream=True`, or automatic when the cache
would not fit in RAM): a DataLoader with workers reads utterances from the HDF5 file, each
worker with its own lazy handle. Cross-corpus (`test_manifest=`): both corpora's features in
memory in one TrainingData, ids prefixed with their corpus, labels of the test corpus mapped onto
the training corpus's classes. With `unlabelled=True` the rows the task has no target for
(e.g. utterances without ratings) are kept after the labelled ones, for a teacher to label
(distillation); folds are only ever made from the labelled rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ser.errors import CacheError, FoldError, ManifestError, UserInputError
from ser.features.backbone import resolve_device as resolve_device_name
from ser.features.cache import CacheReader
from ser.features.packed import PackedFeatures
from ser.pipeline.folds import apply_label_map
from ser.pipeline.manifest import manifest_sha256, read_manifest
from ser.pipeline.tasks import Task, build_task

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (B, L, T, D), lengths (B,), targets (B, …)


class _CachedUtterances(Dataset):
    """Utterance `row` of `ids` read from the cache (L, T, D); opens its reader lazily per worker."""

    def __init__(self, cache_path: Path, ids: list[str], layers: list[int] | None):
        self.cache_path, self.ids, self.layers = cache_path, ids, layers
        self._reader: CacheReader | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, row: int) -> tuple[int, torch.Tensor]:
        if self._reader is None:
            self._reader = CacheReader(self.cache_path)
        return row, torch.from_numpy(self._reader.read(self.ids[row], self.layers))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}  # h5py handles cannot be pickled


def _pad(items: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = torch.tensor([row for row, _ in items], dtype=torch.long)
    lengths = torch.tensor([frames.shape[1] for _, frames in items], dtype=torch.long)
    num_layers, _, dim = items[0][1].shape
    x = torch.zeros(len(items), num_layers, int(lengths.max()), dim)  # (B, L, T, D), zero padding
    for i, (_, frames) in enumerate(items):
        x[i, :, : frames.shape[1]] = frames
    return rows, x, lengths


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
    workers: int = 2
    cross: CrossCorpus | None = None  # set when the test utterances come from another corpus
    labelled: int | None = None  # rows [0, labelled) have targets, the rest not; None: every row

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

    def batches(self, batch_rows: list[np.ndarray], scaler: "FeatureScaler | None" = None) -> Iterator[Batch]:
        """(x, lengths, targets) on the device for each array of row positions, in order;
        x standardised by `scaler` when one is given."""
        for x, lengths, targets in self._raw_batches(batch_rows):
            yield (x if scaler is None else scaler(x, lengths)), lengths, targets

    def _raw_batches(self, batch_rows: list[np.ndarray]) -> Iterator[Batch]:
        if self.packed is not None:
            for rows in batch_rows:
                index = torch.from_numpy(rows).to(self.device)
                x, lengths = self.packed.batch(index)  # (B, L, T, D), (B,)
                yield x.to(self.device, non_blocking=True), lengths.to(self.device), self.targets[index]
            return
        loader = DataLoader(
            _CachedUtterances(self.cache_path, self.ids, self.layers),
            batch_sampler=[rows.tolist() for rows in batch_rows],
            num_workers=self.workers,
            collate_fn=_pad,
            pin_memory=self.device.type == "cuda",
        )
        for rows, x, lengths in loader:
            yield x.to(self.device, non_blocking=True), lengths.to(self.device), self.targets[rows.to(self.device)]

    def feature_scaler(self, rows: np.ndarray, batch_size: int = 64) -> "FeatureScaler":
        """Per-layer, per-channel mean and std over every frame of `rows` (a fold's training part)."""
        total = torch.zeros(self.num_layers, self.dim, dtype=torch.float64, device=self.device)
        squares = torch.zeros_like(total)
        for x, _, _ in self._raw_batches([rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]):
            total += x.sum(dim=(0, 2), dtype=torch.float64)  # (L, D); padding is zero
            squares += x.double().pow(2).sum(dim=(0, 2))
        frames = float(self.lengths[rows].sum())
        mean = total / frames
        std = (squares / frames - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-5)
        return FeatureScaler(mean.float(), std.float())


@dataclass(frozen=True)
class FeatureScaler:
    """Standardises batches (x - mean) / std per layer and channel; padding stays exactly zero."""

    mean: torch.Tensor  # (L, D)
    std: torch.Tensor  # (L, D)

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]  # (B, T)
        x = (x - self.mean[None, :, None, :]) / self.std[None, :, None, :]  # (B, L, T, D)
        return x * valid[:, None, :, None]


def resolve_device(device: str) -> torch.device:
    """`auto` → the first GPU when there is one, else the CPU; other names are checked."""
    return torch.device(resolve_device_name(device))


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (free physical pages where that file does not exist)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _feature_home(size_bytes: int, device: torch.device) -> torch.device:
    """Where the packed cache lives: the GPU when it fits with room for the heads, else the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if size_bytes < 0.6 * free:
            return device
    return torch.device("cpu")


def _cached_rows(reader: CacheReader, cache: Path, manifest: Path, df: pd.DataFrame, table: pd.DataFrame,
                 layers: list[int] | None) -> pd.DataFrame:
    """The rows of `table` the cache holds (unreadable audio dropped); refuses a cache of another
    manifest, rows missing from it and layers it does not have."""
    if reader.attrs.get("manifest_sha256") != manifest_sha256(df):
        raise CacheError(
            f"the cache {cache} was extracted from a different manifest than {manifest}",
            "re-run `ser extract` for this manifest (or pass the matching --manifest)",
        )
    table = table[~table["id"].isin(list(reader.skipped))].reset_index(drop=True)  # unreadable audio
    missing = [utt for utt in table["id"] if utt not in reader.lengths]
    if missing:
        raise CacheError(f"{len(missing)} utterances of the manifest are not in the cache, e.g. {missing[0]}")
    for layer in layers or []:
        if not 0 <= layer < reader.num_layers:
            raise UserInputError(f"layer {layer} does not exist", f"the cache has layers 0-{reader.num_layers - 1}")
    return table


def load_training_data(
    manifest: Path,
    cache: Path,
    task: str = "categorical",
    layers: list[int] | None = None,
    device: str = "auto",
    stream: bool | None = None,
    workers: int = 2,
    test_manifest: Path | None = None,
    test_cache: Path | None = None,
    label_map: dict[str, str | None] | None = None,
    unlabelled: bool = False,
) -> TrainingData:
    """Read the manifest's targets and the cache's features once (`stream=None`: decide by size).

    With `test_manifest` (and its `test_cache`) the test corpus is loaded too, labels mapped by
    `label_map` (see `load_cross_corpus_data`). `unlabelled=True` also keeps the rows without
    targets, after the labelled ones."""
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
    with CacheReader(cache) as reader:
        table = _cached_rows(reader, cache, manifest, df, rows, layers)
        labelled = int(table["id"].isin(labelled_rows["id"]).sum())
        num_layers = len(layers) if layers else reader.num_layers
        ids = list(table["id"])
        lengths = np.array([reader.lengths[utt] for utt in ids], dtype=np.int64)
        size_bytes = int(lengths.sum()) * num_layers * reader.dim * 2  # fp16
        if stream is None:
            stream = size_bytes > 0.8 * available_ram_bytes()
        packed = None
        if not stream:
            packed = reader.load_all(ids=ids, layers=layers, device=_feature_home(size_bytes, target_device))
        dim = reader.dim
    return TrainingData(
        ids=ids, table=table, task=fitted, targets=_targets(fitted, table, labelled).to(target_device),
        lengths=lengths, num_layers=num_layers, dim=dim, layers=layers, device=target_device,
        cache_path=Path(cache), packed=packed, workers=workers, labelled=labelled if unlabelled else None,
    )


def _targets(task: Task, table: pd.DataFrame, labelled: int) -> torch.Tensor:
    """Targets of the first `labelled` rows, then NaN (regression) or -1 (classes) for the rest."""
    known = task.targets(table.iloc[:labelled])  # (labelled, …)
    blank = torch.full((len(table) - labelled, *known.shape[1:]), -1 if not known.is_floating_point() else
                       float("nan"), dtype=known.dtype)
    return torch.cat([known, blank])


FEATURE_IDENTITY = ("model", "source", "revision", "random_init", "frame_rate", "num_layers", "dim")


def _check_same_features(train: CacheReader, test: CacheReader, test_cache: Path, model: str) -> None:
    """Refuse a test cache whose features are not those of the training cache (model, layers, dim)."""
    differing = [key for key in FEATURE_IDENTITY if str(train.attrs.get(key)) != str(test.attrs.get(key))]
    if differing:
        shown = ", ".join(f"{key} {test.attrs.get(key)} vs {train.attrs.get(key)}" for key in differing)
        raise CacheError(
            f"the test cache {test_cache} holds other features than the training cache ({shown})",
            f"extract the test corpus with the training cache's model: ser extract --manifest <test manifest> "
            f"--model {model}",
        )


def _mapped_test_rows(test_df: pd.DataFrame, task: Task, label_map: dict[str, str | None]) -> pd.DataFrame:
    """The test corpus's labelled rows with `label_map` applied; refuses labels the training corpus lacks."""
    if "label" not in test_df.columns:
        raise ManifestError("the test manifest has no `label` column", "cross-corpus testing needs its labels")
    table = apply_label_map(task.usable(test_df), label_map)
    counts = table["label"].astype(str).value_counts()
    unknown = sorted(label for label in counts.index if label not in task.labels)
    if unknown:
        listed = ", ".join(f"{label} ({counts[label]} utterances)" for label in unknown)
        raise FoldError(
            f"test labels not among the training labels {', '.join(task.labels)}: {listed}",
            "map them with --label-map, e.g. --label-map joy=happy, or drop them with an empty target (fear=)",
        )
    if table.empty:
        raise FoldError("no test utterance is left after the label mapping")
    return table


def load_cross_corpus_data(
    manifest: Path,
    cache: Path,
    test_manifest: Path,
    test_cache: Path,
    task: str = "categorical",
    layers: list[int] | None = None,
    device: str = "auto",
    label_map: dict[str, str | None] | None = None,
) -> TrainingData:
    """Both corpora in one in-memory TrainingData: the training corpus's usable rows, then every
    usable row of the test corpus with its labels mapped onto the training corpus's classes (the
    task's label set). Ids become `<corpus>:<id>` (corpus = manifest file stem)."""
    if task != "categorical":
        raise UserInputError("--test-manifest supports --task categorical only")
    train_corpus, test_corpus = Path(manifest).stem, Path(test_manifest).stem
    if train_corpus == test_corpus:
        raise UserInputError(f"the test manifest {test_manifest} is of the training corpus {train_corpus!r}",
                             "cross-corpus testing needs another corpus's manifest")
    label_map = dict(label_map or {})
    train_df, test_df = read_manifest(manifest), read_manifest(test_manifest)
    fitted = build_task(task, train_df)
    test_rows = _mapped_test_rows(test_df, fitted, label_map)
    target_device = resolve_device(device)
    with CacheReader(cache) as train_reader, CacheReader(test_cache) as test_reader:
        _check_same_features(train_reader, test_reader, Path(test_cache), str(train_reader.attrs.get("model")))
        parts = [(train_corpus, train_reader, _cached_rows(train_reader, cache, manifest, train_df,
                                                           fitted.usable(train_df), layers)),
                 (test_corpus, test_reader, _cached_rows(test_reader, test_cache, test_manifest, test_df, test_rows,
                                                         layers))]
        lengths = np.array([reader.lengths[utt] for _, reader, table in parts for utt in table["id"]], dtype=np.int64)
        num_layers = len(layers) if layers else train_reader.num_layers
        size_bytes = int(lengths.sum()) * num_layers * train_reader.dim * 2  # fp16
        if size_bytes > 0.8 * available_ram_bytes():
            raise UserInputError(f"the two caches ({size_bytes / 1e9:.1f} GB) do not fit in memory",
                                 "cross-corpus training keeps both caches in memory; use fewer --layers")
        home = _feature_home(size_bytes, target_device)
        packs = [reader.load_all(ids=list(table["id"]), layers=layers, device=home) for _, reader, table in parts]
        dim = train_reader.dim
    tables = [table.assign(id=f"{corpus}:" + table["id"].astype(str)) for corpus, _, table in parts]
    table = pd.concat(tables, ignore_index=True)
    ids = list(table["id"])
    frames = [pack.frames for pack in packs]
    dtype = torch.float32 if any(f.dtype == torch.float32 for f in frames) else torch.float16
    packed = PackedFeatures(
        ids,
        torch.cat([f.to(dtype) for f in frames]),  # (ΣT_train + ΣT_test, L, D)
        torch.cat([packs[0].offsets, packs[1].offsets[1:] + packs[0].offsets[-1]]),  # (N+1,)
    )
    return TrainingData(
        ids=ids, table=table, task=fitted, targets=fitted.targets(table).to(target_device), lengths=lengths,
        num_layers=num_layers, dim=dim, layers=layers, device=target_device, cache_path=Path(cache),
        packed=packed, cross=CrossCorpus(train_corpus, test_corpus, len(tables[0]), label_map),
    )
