"""Cross-corpus data: train and select on one corpus, test on another (`load_cross_corpus_data`).

Both corpora's features sit in memory in one `TrainingData`; ids are prefixed with their
corpus, and the test corpus's labels are mapped onto the training corpus's classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ser.data.folds import apply_label_map
from ser.data.manifest import read_manifest
from ser.errors import CacheError, FoldError, ManifestError, UserInputError
from ser.features.cache import CacheReader
from ser.features.packed import PackedFeatures
from ser.training.cache_access import available_ram_bytes, cached_rows, feature_home, resolve_device
from ser.training.tasks import Task, build_task
from ser.training.training_data import CrossCorpus, TrainingData

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
        parts = [(train_corpus, train_reader, cached_rows(train_reader, cache, manifest, train_df,
                                                           fitted.usable(train_df), layers)),
                 (test_corpus, test_reader, cached_rows(test_reader, test_cache, test_manifest, test_df, test_rows,
                                                         layers))]
        lengths = np.array([reader.lengths[utt] for _, reader, table in parts for utt in table["id"]], dtype=np.int64)
        num_layers = len(layers) if layers else train_reader.num_layers
        size_bytes = int(lengths.sum()) * num_layers * train_reader.dim * 2  # fp16
        if size_bytes > 0.8 * available_ram_bytes():
            raise UserInputError(f"the two caches ({size_bytes / 1e9:.1f} GB) do not fit in memory",
                                 "cross-corpus training keeps both caches in memory; use fewer --layers")
        home = feature_home(size_bytes, target_device)
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
