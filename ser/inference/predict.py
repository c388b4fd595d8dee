"""Apply a trained model to new audio (`ser predict`, `ser.load`): audio → the run's features →
its heads → labels and probabilities (or arousal/valence/dominance).

Features are computed by `ser extract`'s own loop (`features.extract.extract`: the same probing,
batching rule, decoding, layers, `max_seconds` and float16 storage) into a temporary cache, a
chunk of inputs at a time, and read back exactly as training read them. Files longer than the
run's training clips (its `max_seconds`, else its longest utterance) are cut into windows with a
hop; a file's scores are the mean over its windows, and with several folds the mean over folds.
Files that cannot be used are skipped with the reason.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ser.errors import AudioError, CacheError, UserInputError
from ser.features.audio import MIN_SECONDS, probe_audio
from ser.features.backbone import Backbone
from ser.features.cache import CacheReader
from ser.features.extract import extract
from ser.features.progress import ExtractionProgress
from ser.features.records import UtteranceRecord
from ser.inference.recorded_backbone import load_recorded_backbone
from ser.inference.trained_model import FoldModel, TrainedModel, load_trained
from ser.inference.waveform import as_waveform

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")
CHUNK_SECONDS = 300.0  # audio per temporary cache: bounds its size and memory (≈ 1 MB/s for wavlm-base)
DEFAULT_HOP_FRACTION = 0.5
UNCERTAIN = "uncertain"  # the label of a clip or window below --min-confidence


@dataclass(frozen=True)
class Prediction:
    """One recording's prediction: `label` and `probabilities` (categorical runs) or `dimensions`
    (arousal, valence, dominance on the training manifest's scale)."""

    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    dimensions: dict[str, float] = field(default_factory=dict)


@dataclass
class PredictionResult:
    """`table`: one row per input (id, path, windows, prediction + p_<label>, or A/V/D);
    `segments`: one row per window (id, path, start, end, …); `skipped`: {input id: reason}."""

    table: pd.DataFrame
    segments: pd.DataFrame
    skipped: dict[str, str]


@dataclass(frozen=True)
class _Window:
    input_id: str
    path: str
    start: float  # seconds from the start of the input (its manifest segment, if any)
    end: float
    record: UtteranceRecord


def collect_inputs(inputs: Iterable[str | Path] | str | Path) -> list[UtteranceRecord]:
    """Audio files, folders (searched recursively for audio files) and manifests (.csv) → records;
    one path alone is one input.

    A file's id is its path as given; a manifest's rows keep their ids. Paths that do not exist
    stay in the list, to be reported as skipped with the reason."""
    from ser.data.manifest import read_manifest, utterance_records

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]  # not its characters: "clip.wav" began with "c", "/data/x.wav" with the root folder
    records: dict[str, UtteranceRecord] = {}
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            raise UserInputError(
                f"predict_many() takes paths (files, folders or manifests), not a {type(item).__name__}",
                "predict a waveform with predict(samples, sr=…)")
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise UserInputError(f"no audio files in folder {path}", f"it is searched for {', '.join(AUDIO_SUFFIXES)}")
            new = [UtteranceRecord(str(p), str(p.resolve())) for p in found]
        elif path.suffix.lower() == ".csv":
            new = utterance_records(read_manifest(path), path)
        else:
            new = [UtteranceRecord(str(item), str(path.resolve()))]
        for record in new:
            records.setdefault(record.id, record)
    if not records:
        raise UserInputError("no input to predict", "pass audio files, folders or a manifest")
    return list(records.values())


def clip_seconds(features: dict) -> float | None:
    """The longest audio the heads were trained on: the cache's max_seconds, else its longest utterance
    (plus three frames: a frontend window spans up to 2.5 hops, so every training file fits one window)."""
    if features.get("max_seconds"):
        return float(features["max_seconds"])
    frames, rate = features.get("longest_frames"), features.get("frame_rate")
    return (int(frames) + 3) / float(rate) if frames and rate else None


def window_bounds(seconds: float, window: float | None, hop: float) -> list[tuple[float, float]]:
    """[(start, end)] covering `seconds`: one window when it fits, else windows `hop` apart and a
    last one that ends with the recording."""
    if window is None or seconds <= window:
        return [(0.0, seconds)]
    starts = [k * hop for k in range(int(math.ceil((seconds - window) / hop)))]
    starts.append(seconds - window)
    return [(round(start, 4), round(start + window, 4)) for start in starts]


def extract_features(records: Sequence[UtteranceRecord], backbone: Backbone, layers: list[int] | None,
                     max_seconds: float | None, batch_seconds: float | None = None,
                     memory_budget: str | int | None = None) -> tuple[dict, dict[str, str]]:
    """({id: float32 (L, T, D)}, {id: reason}): the features `ser extract` would store for `records`,
    through a temporary cache, read back as training reads them."""
    with tempfile.TemporaryDirectory(prefix="ser-predict-") as folder:
        out = Path(folder) / "features.h5"
        try:
            summary = extract(records, backbone, out, layers=layers, max_seconds=max_seconds or None,
                              batch_seconds=batch_seconds, memory_budget=memory_budget, on_error="skip")
        except CacheError:  # not one of them could be extracted: the reasons are in the skipped list
            table = pd.read_csv(out.with_name(out.stem + ".skipped.csv"), dtype=str, keep_default_na=False)
            return {}, dict(zip(table["id"], table["reason"]))
        with CacheReader(out) as cache:
            return {utt: cache.read(utt) for utt in cache.ids}, dict(summary.skipped)


class EmotionRecognizer:
    """A trained model with its backbone loaded: `predict(path or array)`, `predict_many(paths)`.

    Build it with `ser.load(RUN_DIR or exported folder)`."""

    def __init__(self, model: TrainedModel, *, model_dir: Path | None = None, allow_download: bool = False,
                 device: str = "auto", precision: str = "auto", windows: bool = True, window: float | None = None,
                 hop: float | None = None, batch_seconds: float | None = None, backbone: Backbone | None = None,
                 calibrated: bool = True, min_confidence: float | None = None, memory_budget: str | int | None = None):
        """`backbone`: an already loaded backbone for every fold (else loaded from the run's record);
        `calibrated`: divide each fold's logits by its dev-fitted temperature (False: the raw softmax);
        `min_confidence`: label a clip or window UNCERTAIN when its top probability is below it;
        `memory_budget`: what one forward pass may use ("2GiB"; default as for `ser extract`)."""
        self.model = model
        self.calibrated = calibrated
        if min_confidence is not None and not 0 <= min_confidence <= 1:
            raise UserInputError(f"--min-confidence {min_confidence} must be between 0 and 1")
        self.min_confidence = min_confidence
        self.window = (window or clip_seconds(model.features)) if windows else None
        if self.window is not None and not self.window >= MIN_SECONDS:
            raise UserInputError(f"--window {self.window:g} is shorter than the {1000 * MIN_SECONDS:g} ms a model needs",
                                 f"give at least {MIN_SECONDS:g} s")
        self.hop = hop or (self.window or 0) * DEFAULT_HOP_FRACTION
        if self.window is not None and not 0 < self.hop <= self.window:
            raise UserInputError(f"--hop {hop} must be positive and at most the window ({self.window:g} s)")
        self.batch_seconds, self.memory_budget = batch_seconds, memory_budget
        cache_layers = model.features.get("layers")
        self.extract_layers = None if cache_layers is None else [int(layer) for layer in cache_layers]
        self.max_seconds = model.features.get("max_seconds") or None
        # One backbone per distinct backbone folder (folds with a fine-tuned backbone have their own).
        self.backbones: dict[Path | None, Backbone] = {}
        if backbone is not None:
            self.backbones = {fold.backbone_dir: backbone for fold in model.folds}
        for fold in model.folds:
            if fold.backbone_dir not in self.backbones:
                self.backbones[fold.backbone_dir] = load_recorded_backbone(
                    model.features, fold_backbone=fold.backbone_dir, model_dir=model_dir,
                    allow_download=allow_download, device=device, precision=precision)

    @property
    def columns(self) -> list[str]:
        return self.model.columns

    def _windows(self, records: Sequence[UtteranceRecord], skipped: dict[str, str]) -> list[_Window]:
        windows = []
        for record in records:
            try:
                seconds = probe_audio(record).seconds
            except AudioError as error:
                skipped[record.id] = error.reason
                continue
            base = record.start or 0.0
            if self.window is None and self.max_seconds:
                seconds = min(seconds, float(self.max_seconds))  # cropped by extraction, as in `ser extract`
            for k, (start, end) in enumerate(window_bounds(seconds, self.window, self.hop)):
                if end - start >= seconds:  # the whole input: exactly what `ser extract` reads
                    piece = record
                else:
                    piece = UtteranceRecord(f"{record.id}#{k}", record.path, base + start, base + end)
                windows.append(_Window(record.id, record.path, start, min(end, seconds), piece))
        return windows

    def _scores(self, windows: list[_Window], skipped: dict[str, str]) -> dict[str, np.ndarray]:
        """{window record id: scores averaged over folds} for the windows that could be computed."""
        records = [window.record for window in windows]
        per_fold: dict[str, list[np.ndarray]] = {}
        failed: dict[str, str] = {}
        for backbone_dir, backbone in self.backbones.items():
            features, reasons = extract_features(records, backbone, self.extract_layers, self.max_seconds,
                                                 self.batch_seconds, self.memory_budget)
            failed.update(reasons)
            ids = [record.id for record in records if record.id in features]
            selected = [self._select_layers(features[utt]) for utt in ids]
            for fold in (f for f in self.model.folds if f.backbone_dir == backbone_dir):
                scores = fold.scores(fold.outputs(selected), self.calibrated) if ids else np.zeros((0, len(self.columns)))
                for utt, row in zip(ids, scores):
                    per_fold.setdefault(utt, []).append(row)
        for window in windows:
            if window.record.id in failed:
                skipped.setdefault(window.input_id, failed[window.record.id])
        folds = len(self.model.folds)
        return {utt: rows[0] if folds == 1 else np.mean(np.stack(rows), axis=0).astype(rows[0].dtype)
                for utt, rows in per_fold.items() if len(rows) == folds}

    def _select_layers(self, states: np.ndarray) -> np.ndarray:
        return states if self.model.layers is None else states[self.model.layers]  # (L', T, D)

    def predict_records(self, records: Sequence[UtteranceRecord], show_progress: bool = False) -> PredictionResult:
        """Predict every record (a chunk of audio at a time); inputs that fail are in `skipped`."""
        skipped: dict[str, str] = {}
        windows = self._windows(records, skipped)
        scores: dict[str, np.ndarray] = {}
        with ExtractionProgress(len(windows), "predict (windows)", enabled=show_progress) as progress:
            for chunk in _chunks(windows):
                scores.update(self._scores(chunk, skipped))
                progress.advance(len(chunk), sum(window.end - window.start for window in chunk))
        kept = [window for window in windows if window.input_id not in skipped and window.record.id in scores]
        return PredictionResult(self._table(kept, scores), self._segments(kept, scores), skipped)

    def _labelled(self, table: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
        if self.model.task.name == "categorical":
            labels = self.model.task.labels
            table["prediction"] = [labels[k] for k in values.argmax(axis=1)] if len(values) else []
            if self.min_confidence is not None and len(values):
                table.loc[values.max(axis=1) < self.min_confidence, "prediction"] = UNCERTAIN
        for k, column in enumerate(self.columns):
            table[column] = values[:, k] if len(values) else []
        return table

    def _table(self, windows: list[_Window], scores: dict[str, np.ndarray]) -> pd.DataFrame:
        grouped: dict[str, list[_Window]] = {}
        for window in windows:
            grouped.setdefault(window.input_id, []).append(window)
        rows = [np.stack([scores[w.record.id] for w in group]) for group in grouped.values()]
        values = np.stack([row[0] if len(row) == 1 else row.mean(axis=0).astype(row.dtype) for row in rows]) \
            if rows else np.zeros((0, len(self.columns)))
        table = pd.DataFrame({"id": list(grouped), "path": [group[0].path for group in grouped.values()],
                              "windows": [len(group) for group in grouped.values()]})
        return self._labelled(table, values)

    def _segments(self, windows: list[_Window], scores: dict[str, np.ndarray]) -> pd.DataFrame:
        table = pd.DataFrame({"id": [w.input_id for w in windows], "path": [w.path for w in windows],
                              "start": [w.start for w in windows], "end": [w.end for w in windows]})
        values = np.stack([scores[w.record.id] for w in windows]) if windows else np.zeros((0, len(self.columns)))
        return self._labelled(table, values)

    def predict(self, audio: str | Path | np.ndarray, sr: int | None = None) -> Prediction:
        """The prediction for one audio file, or for a waveform at `sr` Hz (mono, (samples, channels) or
        (channels, samples); integer PCM is scaled by its dtype's full scale: waveform.as_waveform)."""
        if isinstance(audio, np.ndarray):
            return self._predict_array(audio, sr)
        if not isinstance(audio, (str, Path)):
            raise UserInputError(f"predict() takes one recording: a path or a waveform array, not a "
                                 f"{type(audio).__name__}", "predict_many(paths) predicts several files; "
                                 "np.asarray(samples) makes a waveform of a list of samples")
        if Path(audio).is_dir():
            raise UserInputError(f"{audio} is a folder; predict() takes one recording",
                                 "predict_many([folder]) predicts every audio file in it")
        result = self.predict_records([UtteranceRecord(str(audio), str(Path(audio).resolve()))])
        if result.skipped:
            raise AudioError(str(audio), next(iter(result.skipped.values())))
        row = result.table.iloc[0]
        if self.model.task.name == "categorical":
            return Prediction(label=str(row["prediction"]),
                              probabilities={label: float(row[f"p_{label}"]) for label in self.model.task.labels})
        return Prediction(dimensions={name: float(row[name]) for name in self.columns})

    def _predict_array(self, wave: np.ndarray, sr: int | None) -> Prediction:
        import soundfile as sf

        wave, rate = as_waveform(wave, sr)
        with tempfile.TemporaryDirectory(prefix="ser-predict-") as folder:
            path = Path(folder) / "input.wav"
            sf.write(path, wave, rate, subtype="FLOAT")
            try:
                return self.predict(path)
            except AudioError as error:  # its reason names the temporary file
                raise UserInputError(error.reason.replace(str(path), "the waveform")) from None

    def predict_many(self, paths: Iterable[str | Path] | str | Path, show_progress: bool = False) -> pd.DataFrame:
        """One row per input (files, folders or manifests; one path alone is one input): id, path,
        windows, prediction and p_<label> (or A/V/D). Inputs that fail are left out with a warning,
        and listed in `.attrs["skipped"]`."""
        result = self.predict_records(collect_inputs(paths), show_progress=show_progress)
        for utt, reason in result.skipped.items():
            warnings.warn(f"skipped {utt}: {reason}", stacklevel=2)
        result.table.attrs["skipped"] = dict(result.skipped)
        return result.table


def _chunks(windows: list[_Window]) -> Iterable[list[_Window]]:
    """Consecutive windows with at most CHUNK_SECONDS of audio each (an input's windows may span two)."""
    chunk, seconds = [], 0.0
    for window in windows:
        if chunk and seconds + (window.end - window.start) > CHUNK_SECONDS:
            yield chunk
            chunk, seconds = [], 0.0
        chunk.append(window)
        seconds += window.end - window.start
    if chunk:
        yield chunk


def predict_inputs(model_path: Path, inputs: Sequence[str | Path] | str | Path, fold: str = "all", show_progress: bool = False,
                   **options) -> PredictionResult:
    """`ser predict`: list the inputs, load the model and its backbone (a missing backbone fails
    before any audio is read), then predict the files, folders and manifests of `inputs`."""
    records = collect_inputs(inputs)
    return load(model_path, fold, **options).predict_records(records, show_progress=show_progress)


def output_paths(out: Path, segments: bool = False) -> list[Path]:
    """The files `save_result` writes: `out` (.csv or .json) and, with `segments`, the windows'
    table beside it (<out stem>.segments.<suffix>)."""
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".json"):
        raise UserInputError(f"--out {out} must end in .csv or .json")
    return [out, out.with_name(f"{out.stem}.segments{out.suffix}")] if segments else [out]


def save_result(result: PredictionResult, out: Path, segments: bool = False) -> list[Path]:
    """Write the table to `out` (.csv, or .json: a list of rows) and, with `segments`, the windows
    beside it (<out stem>.segments.<suffix>); returns the paths written."""
    from ser.data.atomic_files import write_text, write_via_temporary

    tables = list(zip(output_paths(out, segments), (result.table, result.segments)))
    for path, table in tables:
        if path.suffix.lower() == ".json":
            write_text(path, table.to_json(orient="records", indent=2) + "\n")
        else:
            write_via_temporary(path, lambda temporary, table=table: table.to_csv(temporary, index=False))
    return [path for path, _ in tables]


def load(path: str | Path, fold: str | int = "all", **options) -> EmotionRecognizer:
    """`ser.load`: a run directory, one of its fold directories, or an exported folder, with its
    backbone (offline; `model_dir=` a local copy); `fold`: all, a fold number or a fold name.
    Options: see `EmotionRecognizer`."""
    if not isinstance(path, (str, os.PathLike)):
        raise UserInputError(f"ser.load() takes the path of a run or an exported folder, not {type(path).__name__}",
                             "e.g. ser.load('runs/iemocap/wavlm-base/shiftcnn-s0')")
    return EmotionRecognizer(load_trained(Path(path), fold), **options)


__all__ = ["EmotionRecognizer", "FoldModel", "Prediction", "PredictionResult", "collect_inputs", "load", "output_paths",
           "predict_inputs", "save_result"]
