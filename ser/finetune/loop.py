"""Fine-tuning one fold (`finetune_fold`): the backbone's transformer and the head trained
together, selected on dev, written to the same run-directory contract as `ser train` plus the
tuned backbone.

    fold<K>/config.json, metrics.json, history.csv, predictions.csv, layer_weights.json,
            model.pt (the head, as `ser train` writes it), backbone/ (save_pretrained of the tuned
            encoder; config.json's `backbone_dir` names it)   (+ checkpoint.pt while training)

Dropout and LayerDrop are active in training only (model.train() / model.eval()). A checkpoint
(model, optimiser, RNG states, history, best-dev state) is written after the first epoch and then
at most every 30 s, so a killed run (SIGKILL included) resumes from its last finished epoch and
ends with the same numbers as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ser.data.fold import Fold
from ser.errors import TrainingError, UserInputError
from ser.features.audio import SAMPLE_RATE
from ser.training import run_dir as files
from ser.finetune.config import FinetuneConfig, lr_factor
from ser.finetune.data import FinetuneData, iterate, resolve_batching
from ser.finetune.model import FinetuneModel
from ser.training.loop import CHECKPOINT_EVERY_SECONDS, ProgressCallback, random_state, record_test, resume_state
from ser.training.recipes import OPTIMIZERS

BACKBONE_DIR = "backbone"


def _autocast(config: FinetuneConfig, device: torch.device):
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model: FinetuneModel, data: FinetuneData, rows: np.ndarray, batching: str, batch_size: int,
            config: FinetuneConfig, device: torch.device) -> np.ndarray:
    """Model outputs for `rows`, in the order of `rows` → (N, C) float32 (eval mode: no dropout)."""
    model.eval()
    groups = data.evaluation_batches(rows, batching, batch_size)  # positions into `rows`
    pieces = []
    with _autocast(config, device):
        for x, lengths, _ in iterate(data, [rows[g] for g in groups], model, crop=False, device=device):
            pieces.append(model(x, lengths, conv_input=data.conv_cache is not None).float().cpu())
    outputs = torch.cat(pieces)  # (N, C) in batch order
    restored = torch.empty_like(outputs)
    restored[torch.from_numpy(np.concatenate(groups))] = outputs
    return restored.numpy()


def _train_step(model, optimizer, task, data, rows, batching, config, device) -> float:
    """One optimiser step on the batch `rows`; returns the summed loss (× utterances)."""
    conv_input = data.conv_cache is not None
    optimizer.zero_grad()
    groups = [rows[i : i + 1] for i in range(len(rows))] if batching == "accumulate" else [rows]
    loss_sum = 0.0
    for group in groups:
        for x, lengths, targets in iterate(data, [group], model, crop=batching == "crop", device=device):
            with _autocast(config, device):
                outputs = model(x, lengths, conv_input=conv_input)
            loss = task.loss(outputs.float(), targets)
            (loss * len(group) / len(rows)).backward()
            loss_sum += float(loss.detach()) * len(group)
    if config.recipe.grad_clip is not None:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.recipe.grad_clip)
    optimizer.step()
    return loss_sum


def _save_backbone(model: FinetuneModel, fold_dir: Path) -> None:
    """save_pretrained into a temporary folder, then moved into place."""
    temporary, final = fold_dir / f"{BACKBONE_DIR}.tmp", fold_dir / BACKBONE_DIR
    shutil.rmtree(temporary, ignore_errors=True)
    model.backbone.save_pretrained(temporary)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)


def _features_record(config: FinetuneConfig, model: FinetuneModel, data: FinetuneData, fold_dir: Path) -> dict:
    """features.json of a fine-tuned fold: its features are the tuned backbone's (saved in the fold,
    where `ser predict` loads it) from audio cut to `max_seconds`, every hidden state."""
    backbone_config = model.backbone.config
    return {"model": config.model, "source": str((fold_dir / BACKBONE_DIR).resolve()), "revision": "local",
            "random_init": config.random_init, "setting": "finetune", "sample_rate": SAMPLE_RATE,
            "frame_rate": SAMPLE_RATE / math.prod(backbone_config.conv_stride),
            "num_layers": model.head.layer_sum.num_layers, "dim": backbone_config.hidden_size,
            "max_seconds": config.recipe.max_seconds, "longest_frames": int(data.frames.max(initial=0))}


def finetune_fold(
    config: FinetuneConfig,
    data: FinetuneData,
    fold: Fold,
    out_dir: Path,
    model: FinetuneModel,
    device: torch.device,
    progress: ProgressCallback | None = None,
    checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS,
) -> dict:
    """Fine-tune `model` (fresh: pretrained backbone + new head) on one fold; returns metrics.json's dict."""
    out_dir = Path(out_dir)
    if not fold.dev:
        raise TrainingError(f"fold {fold.name} has no dev utterances", "model selection needs a dev set")
    recipe = config.recipe
    train_rows, dev_rows, test_rows = (data.positions(ids) for ids in (fold.train, fold.dev, fold.test))
    task = data.task.configured(recipe.label_smoothing).fitted(data.targets[torch.from_numpy(train_rows)])
    batching = resolve_batching(config.batching, config.conv_cache, model)
    if batching == "accumulate" and task.name != "categorical":
        raise UserInputError(f"--batching accumulate cannot train the {task.name} task (its loss needs whole batches)",
                             "use --batching crop or pad")
    saved_config = {**config.to_dict(), "fold": fold.name, "dev_split": fold.dev_split, "task_state": task.to_dict(),
                    "head_resolved": model.head.constructor_kwargs, "batching_resolved": batching,
                    "backbone_dir": BACKBONE_DIR, "model_type": model.backbone.config.model_type,
                    "sizes": {"train": len(train_rows), "dev": len(dev_rows), "test": len(test_rows)}}
    saved_path = out_dir / files.CONFIG
    for note in files.set_aside_damaged(out_dir):
        print(f"note: {note}", file=sys.stderr)
    if saved_path.is_file() and files.read_json(saved_path) != saved_config:
        raise TrainingError(f"{out_dir} holds a run with a different configuration",
                            "pass --run-name (or --out) to start a new run, or delete that directory")
    if files.is_finished(out_dir):
        return files.read_json(out_dir / files.METRICS)
    files.write_json(saved_path, saved_config)

    optimizer = OPTIMIZERS[recipe.optimizer](model.parameter_groups(recipe.lr, recipe.backbone_lr, recipe.weight_decay),
                                             lr=recipe.lr, betas=recipe.betas)
    steps_per_epoch = -(-len(train_rows) // recipe.batch_size)
    eval_batch = recipe.batch_size
    checkpoint_path = out_dir / files.CHECKPOINT
    state = resume_state(checkpoint_path, model, optimizer)

    last_checkpoint = -math.inf
    for epoch in range(state["epoch"], recipe.epochs):
        started = time.perf_counter()
        model.train()
        loss_sum = 0.0
        for rows in data.training_batches(train_rows, recipe.batch_size, config.seed, epoch):
            factor = lr_factor(recipe, state["step"], epoch, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = group["peak_lr"] * factor
            loss_sum += _train_step(model, optimizer, task, data, rows, batching, config, device)
            state["step"] += 1
        scores = {}
        # Test: at the last epoch, or every epoch with record_test_curve (the dev-selected one after the loop).
        testing = config.record_test_curve or epoch + 1 == recipe.epochs
        for split, rows in (("dev", dev_rows), ("test", test_rows)) if testing else (("dev", dev_rows),):
            outputs = predict(model, data, rows, batching, eval_batch, config, device)
            targets = data.targets[torch.from_numpy(rows)]
            scores[split] = (task.evaluate(outputs, targets.numpy()), float(task.loss(torch.from_numpy(outputs), targets)))
        (dev_metrics, dev_loss), test_metrics = scores["dev"], scores["test"][0] if testing else None
        row = {"epoch": epoch + 1, "train_loss": loss_sum / len(train_rows), "dev_loss": dev_loss}
        row.update({f"dev_{name}": dev_metrics[name] for name in task.history_metrics})
        if config.record_test_curve:
            row.update({f"test_{name}": test_metrics[name] for name in task.history_metrics})
        row.update({"lr": recipe.lr * factor, "backbone_lr": recipe.backbone_lr * factor,
                    "seconds": time.perf_counter() - started})
        state["history"].append(row)
        if dev_metrics[task.selection_metric] > state["best_score"]:
            state.update(best_score=dev_metrics[task.selection_metric], best_epoch=epoch + 1, best_dev=dev_metrics,
                         best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        record_test(state, test_metrics, epoch, task.selection_metric, config.record_test_curve)
        state["epoch"] = epoch + 1
        if time.perf_counter() - last_checkpoint >= checkpoint_seconds:
            files.save_torch(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                               "rng": random_state(), "state": state})
            last_checkpoint = time.perf_counter()
        if progress is not None:
            progress(fold.name, epoch + 1, recipe.epochs, row)

    model.load_state_dict(state["best_state"])
    test_outputs = predict(model, data, test_rows, batching, eval_batch, config, device)
    targets = data.targets[torch.from_numpy(test_rows)].numpy()
    metrics = {"test": task.evaluate(test_outputs, targets), "dev": state["best_dev"], "best_epoch": state["best_epoch"],
               "test_last": state["last_test"]}
    if state["optimistic"] is not None:  # record_test_curve only
        metrics["test_best_epoch_optimistic"] = {**state["optimistic"], "note": "max over epochs of test "
                                                 f"{task.selection_metric}: optimistic, for comparison with papers only"}
    head = model.head
    files.write_csv(out_dir / files.HISTORY, pd.DataFrame(state["history"]))
    files.write_csv(out_dir / files.PREDICTIONS, task.predictions([data.ids[r] for r in test_rows], test_outputs, targets))
    files.write_json(out_dir / files.LAYER_WEIGHTS, {"layers": list(range(head.layer_sum.num_layers)),
                                                     "weights": head.layer_weights().detach().cpu().tolist()})
    files.write_model(out_dir / files.MODEL, head, config.head, model.backbone.config.hidden_size,
                      head.layer_sum.num_layers, task.num_outputs, saved_config)
    _save_backbone(model, out_dir)
    files.write_json(out_dir / files.FEATURES, _features_record(config, model, data, out_dir))
    files.write_json(out_dir / files.METRICS, metrics)
    checkpoint_path.unlink(missing_ok=True)
    return metrics
