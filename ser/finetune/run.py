"""`ser finetune` top-down: load the backbone once, (optionally) cache its frozen CNN output,
read the manifest's utterances, choose the folds and fine-tune each from the pristine weights;
and `load_finetuned`, which rebuilds (backbone, head) from a finished fold directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ser.data.workspace import Workspace
from ser.errors import UserInputError
from ser.features.backbones import load_backbone
from ser.features.output_lock import exclusive_output
from ser.training import run_dir as files
from ser.training.cache_access import resolve_device
from ser.finetune.config import FinetuneConfig
from ser.finetune.conv_cache import build_conv_cache, conv_cache_path
from ser.finetune.data import load_finetune_data
from ser.finetune.loop import finetune_fold
from ser.finetune.model import build_finetune_model, load_speech_backbone
from ser.training.loop import CHECKPOINT_EVERY_SECONDS, ProgressCallback
from ser.training.protocol import fold_dir_name, protocol_folds, select_folds
from ser.training.tracking import open_tracker


def run_finetune(
    workdir: Path,
    config: FinetuneConfig,
    which: str = "all",
    manifest: Path | None = None,
    out: Path | None = None,
    run_name: str | None = None,
    device: str = "auto",
    allow_download: bool = False,
    progress: ProgressCallback | None = None,
    checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS,
    show_progress: bool = False,
    log: str | None = None,
) -> tuple[Path, dict[str, dict]]:
    """Fine-tune the selected folds into runs/<corpus>/<model>/<run-name>/fold<K>/ (or `out`);
    `all` also writes summary.json. Returns (run directory, {fold directory name: metrics}).
    `show_progress`: a progress bar while the CNN cache is built. `log`: tensorboard | mlflow records each
    fold's epochs and final metrics (tracking.py)."""
    workspace = Workspace(Path(workdir))
    manifest_path = workspace.find_manifest(manifest)
    corpus = workspace.corpus_of(manifest_path)
    config = dataclasses.replace(config, corpus=corpus)
    target = resolve_device(device)
    pristine = load_speech_backbone(config.model, config.random_init, allow_download, str(target),
                                    config.recipe.layerdrop)
    conv_cache = None
    if config.conv_cache:
        conv_cache = build_conv_cache(manifest_path, pristine,
                                      conv_cache_path(workspace, corpus, config.model, config.random_init,
                                                      config.recipe.max_seconds), config.recipe.max_seconds,
                                      show_progress=show_progress)
    data = load_finetune_data(manifest_path, config.task, pristine.num_frames, config.recipe.max_seconds, conv_cache)
    run_dir = Path(out) if out is not None else workspace.runs_root(corpus, config.model) / (run_name or config.run_name())
    results = {}
    for index, fold in select_folds(protocol_folds(config, data), which):
        model = build_finetune_model(config, pristine, data.task.num_outputs)
        fold_name = fold_dir_name(index)
        fold_dir = run_dir / fold_name
        kind = None if files.is_finished(fold_dir) else log  # a finished fold is not logged again
        with exclusive_output(fold_dir, directory=True), \
                open_tracker(kind, fold_dir, f"{run_dir.name}/{fold_name}", f"ser/{corpus}/{config.model}",
                             {**config.to_dict(), "fold": fold.name}) as tracker:  # one process per fold
            results[fold_name] = finetune_fold(config, data, fold, fold_dir, model, target,
                                               tracker.progress(progress), checkpoint_seconds)
            tracker.log_final(results[fold_name])
    if which == "all":
        files.write_json(run_dir / files.SUMMARY, files.fold_summary(results, run_dir))
    return run_dir, results


def load_finetuned(fold_dir: Path, device: str = "cpu"):
    """(backbone, head, config) of a finished fine-tuned fold: the tuned encoder as a `SpeechBackbone`
    (eval mode, fp32: its `forward(waves)` gives the hidden states the head was trained on) and
    the head from model.pt. Cut waves to config["max_seconds"] as training did."""
    fold_dir = Path(fold_dir)
    config = files.read_json_file(fold_dir / files.CONFIG, files.retrain_hint(fold_dir))
    if config.get("setting") != "finetune" or not files.is_finished(fold_dir):
        raise UserInputError(f"{fold_dir} is not a finished fine-tuned fold", "run `ser finetune` to make one")
    backbone = load_backbone(str(fold_dir / config["backbone_dir"]), device=device, precision="fp32")
    head = files.load_model(fold_dir / files.MODEL).to(device)
    return backbone, head, config
