"""The run directory contract: reading and writing its files, plus the resume checkpoint.

    <run-name>/fold<K>/config.json, metrics.json, history.csv, predictions.csv,
                       layer_weights.json, model.pt, features.json, calibration.json
                       (+ checkpoint.pt while training)
    <run-name>/summary.json      (mean ± sample std over folds, bootstrap intervals over utterances,
                                  calibration over folds and pooled)

Every file is written to a temporary name and moved into place, so an interrupted run never
leaves a half-written file; `metrics.json` is written last and marks a finished fold.
"""

from __future__ import annotations

import io
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ser.data.atomic_files import (damaged_file, read_first_line, read_json, read_json_file, read_json_or_none,  # noqa: F401 (run-dir API)
                                  write_json, write_text, write_via_temporary)
from ser.features.output_lock import exclusive_output, writer_of
from ser.training.calibration import pooled_calibration

CONFIG = "config.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
PREDICTIONS = "predictions.csv"
LAYER_WEIGHTS = "layer_weights.json"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
SELECTION = "selection.pt"  # --refit: the finished selection phase (training/loop.py _selection_record)
REFIT_CHECKPOINT = "refit_checkpoint.pt"  # --refit: the refit's resume checkpoint
RESUME_FILES = (CHECKPOINT, SELECTION, REFIT_CHECKPOINT)  # an unfinished fold's state; removed when it ends
REFIT_HISTORY = "refit_history.csv"  # --refit: the refit's epochs (history.csv holds the selection phase's)
SUMMARY = "summary.json"
FEATURES = "features.json"
CALIBRATION = "calibration.json"  # the temperature fitted on dev (calibration.py); absent: T = 1
MEMORY = "memory.json"  # the fold's start, peak and end RSS in bytes (allocator.PhaseMemory)
ERROR = "error.txt"  # why a fold stopped (its first line as the CLI printed it); read by run tables


def hold_fold(fold_dir: Path) -> AbstractContextManager[Path]:
    """The fold directory's lock (features/output_lock.py): one process writes a fold at a time, its
    error.txt included. Re-entrant, so a sweep holds it around the training loop that takes it too;
    a fold that another process holds raises OutputBusyError."""
    return exclusive_output(fold_dir, directory=True)


def write_csv(path: Path, table: pd.DataFrame) -> None:
    write_via_temporary(path, lambda tmp: table.to_csv(tmp, index=False))


def save_torch(path: Path, data: dict) -> None:
    """Serialised in memory first: a failed write is then a plain OSError (→ WriteError), not
    torch's RuntimeError from inside its zip writer."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    write_via_temporary(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def load_torch(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def write_memory(fold_dir: Path, figures: dict, shared_by: int = 1) -> None:
    """memory.json of a fold that just trained (`shared_by` > 1: a stacked group's figures, shared
    by that many members)."""
    write_json(fold_dir / MEMORY, {**figures, **({"shared_by": shared_by} if shared_by > 1 else {})})


def is_finished(fold_dir: Path) -> bool:
    """Whether a fold is finished: its metrics.json and config.json both read. The one test of
    "is this fold done" for `ser train`, `ser sweep` (and its back-ends) and fine-tuning: a damaged
    or missing config.json leaves the metrics unattributable, so the fold is trained again
    (`set_aside_damaged` moves the damaged file aside first)."""
    return all(read_json_or_none(Path(fold_dir) / name) is not None for name in (METRICS, CONFIG))


def why_untrained(fold_dir: Path) -> str:
    """Why a fold folder holds no model.pt yet, for a user who asked for its model."""
    writer = writer_of(fold_dir)
    if writer is not None:
        return f"it is still being trained by {writer}"
    reason = read_first_line(Path(fold_dir) / ERROR)
    if reason is not None:
        return f"its training failed ({reason or 'no reason recorded'})"
    if any((Path(fold_dir) / name).is_file() for name in RESUME_FILES):
        return "its training stopped before the end (rerun the command that trained it to resume)"
    return "it was never trained to the end"


def retrain_hint(fold_dir: Path) -> str:
    """What to do about a damaged file of a finished fold (model.pt, features.json, …)."""
    return (f"train that fold again: delete {fold_dir} and rerun the command that wrote it "
            "(ser train, sweep or finetune)")


def _loads(path: Path) -> bool:
    try:
        return isinstance(load_torch(path), dict)
    except Exception:  # noqa: BLE001 — any failure to load means the file is damaged
        return False


def set_aside_damaged(fold_dir: Path) -> list[str]:
    """Move an unreadable config.json, metrics.json or resume file (checkpoint.pt, …) aside (to
    `<name>.damaged`), so the fold is trained again instead of failing; returns one note per file moved."""
    notes = []
    checks = ((CONFIG, read_json_or_none), (METRICS, read_json_or_none), *((name, _loads) for name in RESUME_FILES))
    for name, readable in checks:
        path = Path(fold_dir) / name
        if path.is_file() and not readable(path):
            path.replace(path.with_name(name + ".damaged"))
            notes.append(f"{path} was damaged (kept as {name}.damaged): this fold is trained again")
    return notes


def write_model(path: Path, head: nn.Module, head_name: str, in_dim: int, num_layers: int, num_classes: int,
                config: dict, scaler=None) -> None:
    """model.pt: the state dict, everything `create_head` needs to rebuild the head, the config and
    the feature standardisation (mean/std per layer and channel, or None) its inputs need."""
    save_torch(path, {
        "head": head_name,
        "in_dim": in_dim,
        "num_layers": num_layers,
        "num_classes": num_classes,
        "constructor_kwargs": dict(head.constructor_kwargs),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in head.state_dict().items()},
        "config": config,
        "feature_scaler": None if scaler is None else {"mean": scaler.mean.cpu(), "std": scaler.std.cpu()},
    })


def features_record(cache_path: Path) -> dict:
    """The root attributes of the cache a head is trained from (backbone source, revision, stored
    layers, max_seconds, frame rate, …) and its longest utterance in frames."""
    from ser.features.cache import CacheReader

    with CacheReader(cache_path) as reader:
        record = dict(reader.attrs)
        record["longest_frames"] = max(reader.lengths.values(), default=0)
    record["cache"] = str(Path(cache_path).resolve())
    return record


def write_calibration(fold_dir: Path, temperature: float) -> None:
    """calibration.json: the temperature fitted on dev (calibration.py), read by `ser predict`,
    `ser.load` and `ser export`."""
    write_json(Path(fold_dir) / CALIBRATION, {"temperature": temperature, "fitted_on": "dev",
                                              "method": "temperature scaling"})


def write_features_record(path: Path, cache_path: Path) -> None:
    """features.json: `features_record` of the training cache, so that `ser predict` can compute
    the same features for new audio."""
    write_json(path, features_record(cache_path))


def load_model(path: Path) -> nn.Module:
    """Rebuild a trained head from model.pt (weights only, no pickled code)."""
    from ser.heads import create_head

    saved = load_torch(path)
    head = create_head(**saved["constructor_kwargs"])
    head.load_state_dict(saved["state_dict"])
    return head.eval()


def fold_summary(fold_metrics: dict[str, dict], run_dir: Path | None = None) -> dict:
    """summary.json: for every scalar metric of every section, {mean, std (sample, ddof=1),
    per_fold}; with `run_dir` (holding the fold directories) the test metrics also get `pooled`
    and `ci95`, a 95% bootstrap interval over the test utterances pooled across the folds."""
    from ser.training.statistics import interval_settings, pooled_intervals, read_fold_predictions, sample_std

    folds = list(fold_metrics)
    summary: dict = {"folds": folds}
    for section in ("test", "dev", "test_last", "test_best_epoch_optimistic", "test_before_refit"):
        if not all(isinstance(fold_metrics[fold].get(section), dict) for fold in folds):
            continue  # e.g. the optimistic numbers of runs without --record-test-curve
        first = fold_metrics[folds[0]][section]
        names = [name for name, value in first.items() if isinstance(value, (int, float)) and name != "epoch"]
        summary[section] = {}
        for name in names:
            values = [float(fold_metrics[fold][section][name]) for fold in folds]
            summary[section][name] = {
                "mean": float(np.mean(values)), "std": sample_std(values), "per_fold": values,
            }
    tables = read_fold_predictions(Path(run_dir) / fold for fold in folds) if run_dir is not None else None
    pooled = pd.concat(tables, ignore_index=True) if tables else None
    intervals = pooled_intervals([pooled]) if pooled is not None else {}
    for name, interval in intervals.items():
        if name in summary["test"]:
            summary["test"][name].update(interval)
    if intervals:
        summary["bootstrap"] = interval_settings()
    if folds and all("test_before" in (fold_metrics[fold].get("calibration") or {}) for fold in folds):
        summary["calibration"] = calibration_summary(fold_metrics, tables)
    return summary


def calibration_summary(fold_metrics: dict[str, dict], tables: list[pd.DataFrame] | None = None) -> dict:
    """summary.json's "calibration": each fold's temperature and test ECE / NLL before and after
    (mean, sample std, per fold) and, given the folds' predictions tables, `pooled`: ECE over every
    fold's test clips at once with its noise floor (training/calibration.py pooled_calibration)."""
    from ser.training.statistics import class_probabilities, sample_std

    blocks = [fold_metrics[fold]["calibration"] for fold in fold_metrics]
    values = {"temperature": [b["temperature"] for b in blocks]}
    for when in ("before", "after"):
        for score in ("ece", "nll"):
            values[f"test_{score}_{when}"] = [b[f"test_{when}"][score] for b in blocks]
    summary: dict = {name: {"mean": float(np.mean(v)), "std": sample_std(v), "per_fold": [float(x) for x in v]}
                     for name, v in values.items()}
    if tables is not None:
        parts = []
        for table, block in zip(tables, blocks):
            found = class_probabilities(table)
            if found is None or (found[1] < 0).any():  # a label without a probability column: nothing to pool
                return summary
            parts.append((*found, block["temperature"]))
        summary["pooled"] = pooled_calibration(parts)
    return summary
