"""`ser export RUN_DIR --out DIR`: a self-contained model folder that `ser predict --model-dir` and
`ser.load` read (trained_model.load_export) without the run directory or the cache.

    config.json                 format "ser-model", the folds (head constructor arguments, task,
                                evaluation batch), the run's layers and training config, the
                                features record (cache attributes), metrics per fold
    model.safetensors           head weights, keys "<fold>/<parameter>"
    feature_scaler.safetensors  per-fold feature standardisation, keys "<fold>/mean|std" (if any)
    labels.json                 class labels (or the dimensions)
    backbone.json               backbone reference: id, source, revision, commit hash
    README.md                   model card: protocol, metrics, backbone, usage
    <fold>.onnx                 with --onnx: standardisation + head + ÷ temperature, checked with onnxruntime
    backbone/<fold>/            a fold's own (fine-tuned) backbone, when the run saved one
    backbone/                   with --include-backbone: a copy of the run's local backbone folder

The folder is built beside DIR and renamed into place, so an interrupted export leaves nothing,
and the whole export holds the lock on DIR (features.output_lock, as extraction does for a
cache): a second `ser export` to the same --out fails at once, naming the process that holds it.

An ONNX graph clamps `lengths` to [1, frames] itself: a deployer's 0, negative or too large
length gives the outputs of the nearest valid one instead of NaN or reads past the frames.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ser.data.atomic_files import write_json, write_text
from ser.errors import UserInputError
from ser.features.output_lock import exclusive_output
from ser.inference.model_card import model_card
from ser.inference.recorded_backbone import FOLD_BACKBONE, backbone_reference
from ser.inference.trained_model import (EXPORT_CONFIG, EXPORT_FORMAT, EXPORT_FORMAT_VERSION, EXPORT_SCALER,
                                        EXPORT_WEIGHTS, FoldModel, TrainedModel, is_export, load_run)
from ser.training.training_data import FeatureScaler

ONNX_TOLERANCE = 1e-4  # max |onnxruntime − torch| accepted for an exported head
ONNX_OPSET = 18


@dataclass
class ExportSummary:
    folder: Path
    folds: list[str]
    onnx_max_error: dict[str, float] = field(default_factory=dict)  # fold → max |onnxruntime − torch|


def export_model(run: Path, out: Path, fold: str = "all", onnx: bool = False, overwrite: bool = False,
                 include_backbone: bool = False) -> ExportSummary:
    """Write the selected folds of a run directory as a self-contained model folder `out`
    (`include_backbone`: copy the run's backbone folder in, for backbones that are not on the hub)."""
    run, out = Path(run), Path(out)
    if is_export(run):
        raise UserInputError(f"{run} is already an exported model folder", "copy the folder instead")
    with exclusive_output(out, directory=True):  # one export per --out at a time
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not overwrite:
                raise UserInputError(f"{out} exists and is not empty", "pass --overwrite to replace it, or another --out")
            if not is_export(out):  # e.g. the run itself, or the runs/ folder above it
                raise UserInputError(f"--overwrite replaces only a folder written by `ser export`, and {out} is not one",
                                     "choose a new or empty --out")
        model = load_run(run, fold)
        bundled = _backbone_to_bundle(model) if include_backbone else None
        staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            summary = _write_folder(model, run, staging, onnx)
            if bundled is not None:
                shutil.copytree(bundled, staging / FOLD_BACKBONE, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(".cache"))
            _move_into_place(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    summary.folder = out
    return summary


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished folder onto `out`; a previous `out` (--overwrite) is renamed aside first
    and removed after, so `out` is never a mixture of two exports."""
    retired = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(out, retired)
    os.replace(staging, out)
    shutil.rmtree(retired, ignore_errors=True)


def _backbone_to_bundle(model: TrainedModel) -> Path:
    """The local backbone folder of the run's features record (what --include-backbone copies)."""
    source = str(model.features.get("source", ""))
    if not Path(source).is_dir():
        kept = ("its features are computed by ser itself: there is no backbone to copy" if source.startswith("ser:")
                else "hub models are referenced by id and revision in backbone.json")
        raise UserInputError(f"--include-backbone copies a local backbone folder; this run's backbone is {source!r}",
                             f"{kept}: drop --include-backbone")
    return Path(source)


def _write_folder(model: TrainedModel, run: Path, folder: Path, onnx: bool) -> ExportSummary:
    from safetensors.torch import save_file

    weights = {f"{fold.name}/{key}": value.detach().cpu().clone().contiguous()
               for fold in model.folds for key, value in fold.head.state_dict().items()}
    save_file(weights, str(folder / EXPORT_WEIGHTS))
    scalers = {f"{fold.name}/{part}": getattr(fold.scaler, part).detach().cpu().clone().contiguous()
               for fold in model.folds if fold.scaler is not None for part in ("mean", "std")}
    if scalers:
        save_file(scalers, str(folder / EXPORT_SCALER))
    task = model.task
    labels = ({"task": task.name, "labels": list(task.labels)} if task.name == "categorical"
              else {"task": task.name, "dimensions": list(task.dimensions)})
    reference = backbone_reference(model.features)
    config = {
        "format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION,
        "folds": [{"name": fold.name, "fold": _fold_name(run, fold), "constructor_kwargs": fold.spec,
                   "task_state": fold.task.to_dict(), "batch_size": fold.batch_size,
                   "standardize": fold.scaler is not None, "temperature": fold.temperature} for fold in model.folds],
        "layers": model.layers, "features": model.features, "train_config": model.config,
        "metrics": model.metrics, "backbone": reference, **labels,
    }
    write_json(folder / EXPORT_CONFIG, config)
    write_json(folder / "labels.json", labels)
    write_json(folder / "backbone.json", reference)
    write_text(folder / "README.md", model_card(model, run, reference))
    for fold in model.folds:
        if fold.backbone_dir is not None:
            shutil.copytree(fold.backbone_dir, folder / FOLD_BACKBONE / fold.name)
    summary = ExportSummary(folder, [fold.name for fold in model.folds])
    if onnx:
        for fold in model.folds:
            summary.onnx_max_error[fold.name] = export_onnx(fold, folder / f"{fold.name}.onnx")
    return summary


def _fold_name(run: Path, fold: FoldModel) -> str:
    from ser.training import run_dir as files

    config_path = (run if (run / files.MODEL).is_file() else run / fold.name) / files.CONFIG
    return str(files.read_json_file(config_path, files.retrain_hint(config_path.parent)).get("fold", fold.name))


class ScaledHead(nn.Module):
    """Standardisation (when the fold has it), the head, and the division of the logits by the fold's
    temperature (softmax of the outputs gives the calibrated probabilities): the graph written to ONNX."""

    def __init__(self, head: nn.Module, scaler: FeatureScaler | None, temperature: float = 1.0):
        super().__init__()
        self.head, self.scaler, self.temperature = head, scaler, float(temperature)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames = torch.ones_like(features[0, 0, :, 0], dtype=lengths.dtype).sum()  # T, as a graph value
        lengths = torch.minimum(lengths.clamp(min=1), frames)  # (B,): in [1, T] whatever a caller passes
        x = features if self.scaler is None else self.scaler(features, lengths)  # (B, L, T, D)
        outputs = self.head(x, lengths)  # (B, C)
        return outputs if self.temperature == 1.0 else outputs / self.temperature


def _onnx_inputs(fold: FoldModel, batch: int, frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features (B, L, T, D) around the fold's scale, and lengths with padding in the batch."""
    spec = fold.spec
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, spec["num_layers"], frames, spec["in_dim"], generator=generator)  # (B, L, T, D)
    if fold.scaler is not None:
        x = x * fold.scaler.std[None, :, None, :] + fold.scaler.mean[None, :, None, :]
    lengths = torch.randint(max(2, frames // 3), frames + 1, (batch,), generator=generator)
    lengths[0] = frames
    x = x * (torch.arange(frames)[None, :] < lengths[:, None])[:, None, :, None]
    return x.half().float(), lengths  # the cache stores float16


def export_onnx(fold: FoldModel, path: Path) -> float:
    """Write the fold's standardisation + head to `path` with dynamic batch and frame axes and check
    it with onnxruntime against torch on batches of other shapes; returns the max |difference|.

    The tracing exporter is tried first; when it fails or its graph does not match (it can bake
    lengths into masks), the torch.export-based one is used."""
    from importlib.util import find_spec

    if find_spec("onnx") is None or find_spec("onnxruntime") is None:
        raise UserInputError("--onnx needs onnx and onnxruntime", "pip install 'ser[onnx]'")
    module = ScaledHead(fold.head, fold.scaler, fold.temperature).eval()
    example = _onnx_inputs(fold, 2, 40, seed=0)
    errors, failure = [], None
    for dynamo in (False, True):
        try:
            _write_onnx(module, example, path, dynamo)
        except Exception as caught:  # noqa: BLE001 (an exporter that cannot trace this head: the other may)
            failure = f"{type(caught).__name__}: {str(caught).strip().splitlines()[0][:200]}"
            continue
        errors.append(_onnx_error(module, fold, path))
        if errors[-1] <= ONNX_TOLERANCE:
            return errors[-1]
    path.unlink(missing_ok=True)
    head = f"head {fold.spec.get('name')} ({fold.name})"
    if not errors:
        raise UserInputError(f"neither ONNX exporter can write {head}: {failure}", "export without --onnx")
    error = min(errors)
    raise UserInputError(f"the ONNX graph of {head} differs from torch by {error:.2e}",
                         f"export without --onnx (the tolerance is {ONNX_TOLERANCE:g})")


def _write_onnx(module: nn.Module, example: tuple, path: Path, dynamo: bool) -> None:
    import warnings

    names = dict(input_names=["features", "lengths"], output_names=["outputs"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=2)
            torch.onnx.export(module, example, str(path), dynamo=True, opset_version=ONNX_OPSET, verbose=False,
                              dynamic_shapes=({0: batch, 2: frames}, {0: batch}), **names)
        else:
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=17, **names,
                              dynamic_axes={"features": {0: "batch", 2: "frames"}, "lengths": {0: "batch"},
                                            "outputs": {0: "batch"}})


@torch.no_grad()
def _onnx_error(module: nn.Module, fold: FoldModel, path: Path) -> float:
    """Max |onnxruntime − torch| over batches whose shapes and lengths differ from the traced one."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    error = 0.0
    for seed, (batch, frames) in enumerate([(3, 57), (1, 23), (5, 96)], start=1):
        x, lengths = _onnx_inputs(fold, batch, frames, seed)
        expected = module(x, lengths).numpy()
        try:
            got = session.run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
        except Exception:  # noqa: BLE001 (a graph that cannot run these shapes is a mismatch)
            return float("inf")
        error = max(error, float(np.abs(got - expected).max()))
    return error
