"""A trained model ready to apply: the fold heads of a run directory or of an exported folder, with
their feature scalers and tasks, and the record of the features they were trained on.

    run directory     <run>/fold<K>/{model.pt, config.json, metrics.json, features.json[, calibration.json][, backbone/]}
                      (or one fold directory itself)
    exported folder   config.json (format "ser-model"), model.safetensors, feature_scaler.safetensors,
                      labels.json, backbone.json, README.md[, <fold>.onnx][, backbone/[<fold>/]]   (export.py)

A fold's head sees its inputs exactly as in training's evaluation: zero-padded batches of
2 × the training batch size, longest first, standardised by the fold's scaler.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ser.errors import UserInputError
from ser.training import run_dir as files
from ser.training.batching import sorted_batches
from ser.inference.recorded_backbone import FOLD_BACKBONE, check_features_record, read_features_record
from ser.training.tasks import Task, task_from_dict
from ser.training.training_data import FeatureScaler

EXPORT_FORMAT = "ser-model"
EXPORT_FORMAT_VERSION = 1
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"  # keys "<fold>/<parameter>"
EXPORT_SCALER = "feature_scaler.safetensors"  # keys "<fold>/mean", "<fold>/std"
EXPORT_HINT = "export the run again with `ser export RUN_DIR --out DIR`"


@dataclass
class FoldModel:
    """One fold's head, its feature standardisation and its task (labels, or A/V/D scale)."""

    name: str
    head: nn.Module
    scaler: FeatureScaler | None
    task: Task
    batch_size: int  # evaluation batch: 2 × the training batch size, as in training
    spec: dict  # create_head's arguments: constructor_kwargs (name, in_dim, num_layers, num_classes, options)
    backbone_dir: Path | None = None  # a backbone saved with the fold (fine-tuned); None: the recorded one
    temperature: float = 1.0  # fitted on dev after training (calibration.json); probabilities = softmax(logits / T)

    @torch.no_grad()
    def outputs(self, features: list[np.ndarray]) -> np.ndarray:
        """Head outputs for float32 features (L, T, D) per utterance → (N, C), in input order."""
        lengths = np.array([item.shape[1] for item in features], dtype=np.int64)
        groups = sorted_batches(lengths, self.batch_size)  # positions, longest first
        pieces = []
        for group in groups:
            x, batch_lengths = pad_batch([features[i] for i in group])  # (B, L, T, D), (B,)
            if self.scaler is not None:
                x = self.scaler(x, batch_lengths)
            pieces.append(self.head(x, batch_lengths).float())
        outputs = torch.cat(pieces)  # (N, C) in batch order
        restored = torch.empty_like(outputs)
        restored[torch.from_numpy(np.concatenate(groups))] = outputs
        return restored.numpy()

    def scores(self, outputs: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Class probabilities (softmax of logits / T, or of the raw logits when not `calibrated`, N × C)
        or A/V/D on the training manifest's scale (N × K)."""
        if self.task.name == "categorical":
            if calibrated and self.temperature != 1.0:
                outputs = outputs / np.float32(self.temperature)
            return torch.softmax(torch.from_numpy(outputs), dim=1).numpy()
        return self.task.denormalise(outputs)


def pad_batch(features: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch of (L, T, D) arrays → x (B, L, T_max, D) float32, lengths (B,) int64."""
    lengths = torch.tensor([item.shape[1] for item in features], dtype=torch.long)
    num_layers, _, dim = features[0].shape
    x = torch.zeros(len(features), num_layers, int(lengths.max()), dim)  # (B, L, T, D)
    for row, item in enumerate(features):
        x[row, :, : item.shape[1]] = torch.from_numpy(item)
    return x, lengths


@dataclass
class TrainedModel:
    """The selected folds of a run (or export) and what their inputs are."""

    folds: list[FoldModel]
    features: dict  # features.json: the cache attributes (source, revision, layers, max_seconds, …)
    layers: list[int] | None  # the run's --layers: indices into the cache's stored layers (None: all)
    config: dict  # the first fold's config.json
    metrics: dict[str, dict] = field(default_factory=dict)  # fold → metrics.json
    origin: Path = Path(".")

    @property
    def task(self) -> Task:
        return self.folds[0].task

    @property
    def columns(self) -> list[str]:
        """Output columns: p_<label> per class, or the dimensions."""
        if self.task.name == "categorical":
            return [f"p_{label}" for label in self.task.labels]
        return list(self.task.dimensions)


def _fold_number(path: Path) -> tuple[int, str]:
    match = re.fullmatch(r"fold(\d+)", path.name)
    return (int(match.group(1)) if match else 10**9, path.name)


def _fold_dirs(run: Path) -> tuple[list[Path], dict[Path, str]]:
    """The run's trained fold folders (or the fold folder itself), and its untrained ones (a
    config.json but no model.pt yet) with the reason."""
    if (run / files.MODEL).is_file():
        return [run], {}
    if (run / files.CONFIG).is_file():  # one fold folder, not trained (yet)
        raise UserInputError(f"{run} holds no trained model: {files.why_untrained(run)}",
                             "choose a fold that has finished")
    folders = sorted((p for p in run.iterdir() if p.is_dir()), key=_fold_number) if run.is_dir() else []
    trained = [p for p in folders if (p / files.MODEL).is_file()]
    untrained = {p: files.why_untrained(p) for p in folders
                 if not (p / files.MODEL).is_file() and (p / files.CONFIG).is_file()}
    if not trained:
        reasons = "; ".join(f"{p.name}: {reason}" for p, reason in untrained.items())
        if reasons:
            raise UserInputError(f"{run} holds no trained model yet ({reasons})", "wait for a fold to finish")
        raise UserInputError(f"{run} holds no trained model (no model.pt in it or in a fold folder)",
                             "pass a run directory written by `ser train`, or an exported folder")
    return trained, untrained


def _fold_name(fold_dir: Path) -> tuple[str, str]:
    """(folder name, fold name) of a fold folder, the fold name from its config.json."""
    config = files.read_json_file(fold_dir / files.CONFIG, files.retrain_hint(fold_dir))
    return fold_dir.name, config.get("fold", fold_dir.name)


def select_fold_names(available: list[tuple[str, str]], which: str) -> list[str]:
    """Folder names chosen by `which`: all, a number K (fold<K>), a folder name or a fold name.
    `available` holds (folder name, fold name) pairs."""
    if which == "all":
        return [folder for folder, _ in available]
    for folder, name in available:
        if which in (folder, name, folder.removeprefix("fold")):
            return [folder]
    choices = ", ".join(f"{folder} ({name})" if name != folder else folder for folder, name in available)
    raise UserInputError(f"no fold {which!r} in this model", f"choose all, or one of: {choices}")


def read_weights(path: Path, load: Callable[[Path], Any], hint: str) -> Any:
    """`load(path)` of a torch or safetensors weights file; a file that cannot be decoded (truncated,
    not that format) is `damaged_file`'s one line, as a damaged JSON run file is."""
    try:
        return load(path)
    except OSError as error:
        if error.errno:  # could not be read at all (permissions, …): the CLI words it
            raise
        cause = str(error)
    except Exception as error:  # noqa: BLE001 — any failure to decode means the file is damaged
        cause = str(error) or type(error).__name__
    raise files.damaged_file(path, hint, f"cannot be loaded: {(cause.strip().splitlines() or [''])[0][:160]}") from None


def _run_fold(fold_dir: Path) -> tuple[FoldModel, dict]:
    """(the fold's model, its config) from model.pt (weights only, no pickled code)."""
    path = fold_dir / files.MODEL
    saved = read_weights(path, files.load_torch, files.retrain_hint(fold_dir))
    if not isinstance(saved, dict) or not {"config", "constructor_kwargs", "state_dict"} <= set(saved):
        raise files.damaged_file(path, files.retrain_hint(fold_dir), "not a ser model file")
    config = saved["config"]
    if config.get("text_model"):
        raise UserInputError(f"{fold_dir} is a multimodal teacher (audio + transcripts)",
                             "ser predict applies audio-only heads: use a `ser distill` student of it")
    if config.get("per_speaker"):
        raise UserInputError(f"{fold_dir} was trained on features z-scored per speaker (--per-speaker): a new clip "
                             "comes without its speaker's statistics", "train the same head without --per-speaker to "
                             "predict, serve or export it")
    head = _build_head(saved["constructor_kwargs"], saved["state_dict"])
    scaler = saved.get("feature_scaler")
    fold = FoldModel(
        name=fold_dir.name, head=head, task=task_from_dict(config["task_state"]),
        scaler=None if scaler is None else FeatureScaler(scaler["mean"].float(), scaler["std"].float()),
        batch_size=2 * int(config["batch_size"]), spec=dict(saved["constructor_kwargs"]),
        backbone_dir=fold_dir / FOLD_BACKBONE if (fold_dir / FOLD_BACKBONE).is_dir() else None,
        temperature=_temperature(fold_dir),
    )
    return fold, config


def _temperature(fold_dir: Path) -> float:
    """The fold's calibration temperature (1 for a run trained before calibration.json existed)."""
    path = fold_dir / files.CALIBRATION
    if not path.is_file():
        return 1.0
    saved = files.read_json_or_none(path)
    temperature = saved.get("temperature") if isinstance(saved, dict) else None
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise UserInputError(f"{path} is damaged (no positive temperature in it)",
                             "delete it to predict uncalibrated, or train the fold again")
    return float(temperature)


def _build_head(constructor_kwargs: dict, state_dict: dict) -> nn.Module:
    from ser.heads import create_head

    head = create_head(**constructor_kwargs)
    head.load_state_dict(state_dict)
    return head.eval()


def load_run(run: Path, which: str = "all") -> TrainedModel:
    """The folds `which` selects (all, K, or a name) of a run directory, or one fold directory."""
    run = Path(run)
    fold_dirs, untrained = _fold_dirs(run)
    chosen = set(select_fold_names([_fold_name(d) for d in [*fold_dirs, *untrained]], which))
    for fold_dir, reason in untrained.items():
        if fold_dir.name not in chosen:
            continue
        if which != "all":
            raise UserInputError(f"{fold_dir.name} of {run} holds no trained model: {reason}",
                                 "choose a fold that has finished")
        # the average the user gets is not of every fold: say so
        print(f"note: {fold_dir.name} is left out of the average of {run}'s folds: {reason}", file=sys.stderr)
    folds, configs, records, metrics = [], [], [], {}
    for fold_dir in (d for d in fold_dirs if d.name in chosen):
        fold, config = _run_fold(fold_dir)
        folds.append(fold)
        configs.append(config)
        records.append(read_features_record(fold_dir, config))
        if (fold_dir / files.METRICS).is_file():
            metrics[fold.name] = files.read_json_file(fold_dir / files.METRICS, files.retrain_hint(fold_dir))
    _check_compatible(folds, records, configs)
    return TrainedModel(folds, records[0], configs[0].get("layers"), configs[0], metrics, run)


def _check_compatible(folds: list[FoldModel], records: list[dict], configs: list[dict]) -> None:
    """Folds averaged together must predict the same outputs from the same features."""
    first = folds[0]
    for fold, record, config in zip(folds[1:], records[1:], configs[1:]):
        same_outputs = (fold.task.name == first.task.name and
                        getattr(fold.task, "labels", None) == getattr(first.task, "labels", None))
        same_inputs = (record.get("source") == records[0].get("source") and
                       record.get("layers") == records[0].get("layers") and config.get("layers") == configs[0].get("layers"))
        if not (same_outputs and same_inputs):
            raise UserInputError(f"folds {first.name} and {fold.name} do not share their inputs and outputs",
                                 "pick one with --fold K")


def load_export(folder: Path, which: str = "all") -> TrainedModel:
    """The folds of a folder written by `ser export` (see export.py)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = files.read_json_file(folder / EXPORT_CONFIG, EXPORT_HINT)
    if config.get("format") != EXPORT_FORMAT or config.get("format_version") != EXPORT_FORMAT_VERSION:
        raise UserInputError(f"{folder} is not a ser model folder of format version {EXPORT_FORMAT_VERSION}",
                             "export it again with `ser export RUN_DIR --out DIR`")
    weights = read_weights(folder / EXPORT_WEIGHTS, load_file, EXPORT_HINT)
    scalers = read_weights(folder / EXPORT_SCALER, load_file, EXPORT_HINT) if (folder / EXPORT_SCALER).is_file() else {}
    chosen = set(select_fold_names([(fold["name"], fold.get("fold", fold["name"])) for fold in config["folds"]], which))
    folds = []
    for entry in (fold for fold in config["folds"] if fold["name"] in chosen):
        prefix = entry["name"] + "/"
        state = {key[len(prefix):]: value for key, value in weights.items() if key.startswith(prefix)}
        scaler = None
        if prefix + "mean" in scalers:
            scaler = FeatureScaler(scalers[prefix + "mean"], scalers[prefix + "std"])
        elif entry.get("standardize"):  # without its scaler the head would see unscaled features: wrong, not failing
            raise files.damaged_file(folder / EXPORT_SCALER, EXPORT_HINT,
                                     f"fold {entry['name']} was trained on standardised features and its scaler is missing")
        backbone_dir = folder / FOLD_BACKBONE / entry["name"]  # the fold's own (fine-tuned) backbone
        if not backbone_dir.is_dir():
            backbone_dir = folder / FOLD_BACKBONE  # one bundled with --include-backbone
        folds.append(FoldModel(
            name=entry["name"], head=_build_head(entry["constructor_kwargs"], state), scaler=scaler,
            task=task_from_dict(entry["task_state"]), batch_size=int(entry["batch_size"]),
            spec=dict(entry["constructor_kwargs"]),
            backbone_dir=backbone_dir if (backbone_dir / "config.json").is_file() else None,
            temperature=float(entry.get("temperature", 1.0)),
        ))
    metrics = {name: value for name, value in config.get("metrics", {}).items() if name in chosen}
    features = check_features_record(config["features"], folder / EXPORT_CONFIG, EXPORT_HINT)
    return TrainedModel(folds, features, config.get("layers"), config["train_config"], metrics, folder)


def is_export(path: Path) -> bool:
    """A folder written by `ser export` (one whose config.json is damaged still counts, when the
    weights are there, so that loading it names the damaged file)."""
    config = Path(path) / EXPORT_CONFIG
    if not config.is_file():
        return False
    data = files.read_json_or_none(config)
    return (Path(path) / EXPORT_WEIGHTS).is_file() if data is None else data.get("format") == EXPORT_FORMAT


def load_trained(path: Path, which: str | int = "all") -> TrainedModel:
    """A run directory, one fold directory, or an exported folder; `which` is all, a fold number
    (3 or "3", as in fold3) or a fold name."""
    path = Path(path)
    if isinstance(which, int) and not isinstance(which, bool):
        which = str(which)
    if not isinstance(which, str):
        raise UserInputError(f"fold={which!r} is not a fold", 'pass "all", a fold number such as 1, or a fold name')
    if not path.exists():
        raise UserInputError(f"{path} does not exist", "pass a run directory (runs/<corpus>/<model>/<run>) or an exported folder")
    return load_export(path, which) if is_export(path) else load_run(path, which)
