"""The training loop of one fold (`train_fold`): from loaded data and a fold to a finished run directory.

The loop is task-agnostic: the task (tasks.py) supplies targets, loss and metrics. Model
selection uses dev only (`task.selection_metric`, higher is better): the weights of the best dev
epoch are kept (a state-dict copy, also in the checkpoint). Test is touched twice: at the last
epoch (`test_last`) and, with the kept weights, at the dev-selected epoch (`test`). Only
`record_test_curve` scores it every epoch, for history's test columns and the labelled optimistic
best-test-epoch number. A recipe with `eval_every_updates` (the linear probe's 30,000 updates are
thousands of tiny epochs) scores only the epochs in which every N-th update falls, and the last;
history.csv then has a `step` column. A checkpoint (model, optimiser, RNG states, history,
best-dev state) replaces the previous one at most every 30 s, so rerunning an interrupted command
continues where it stopped and ends with the same metrics.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ser.data.fold import Fold
from ser.errors import DivergedError, TrainingError
from ser.heads import create_head
from ser.training import run_dir as files
from ser.training.adam import Adam
from ser.training.batching import bucketed_batches, sorted_batches
from ser.training.calibration import fold_calibration
from ser.training.config import TrainConfig
from ser.training.divergence import check_loss, check_outputs
from ser.training.feature_defaults import head_options, is_frontend_cache, resolved_standardize
from ser.training.frequency_warp import FrequencyWarp, check_frequency_warp
from ser.training.recipes import build_optimizer, lr_at
from ser.training.training_data import FeatureScaler, TrainingData

CHECKPOINT_EVERY_SECONDS = 30.0  # a resume checkpoint (weights + optimiser state) costs ~0.2 s at D=768

# (fold name, finished epoch (1-based), total epochs, history row)
ProgressCallback = Callable[[str, int, int, dict], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def random_state() -> dict:
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def weights_copy(head: nn.Module) -> dict[str, torch.Tensor]:
    """The head's state dict, detached and copied to the CPU (the kept weights of an epoch)."""
    return {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}


def checkpoint_if_due(path: Path, head: nn.Module, optimizer: Adam, state: dict, last_checkpoint: float,
                      every_seconds: float) -> float:
    """Replace the resume checkpoint (weights, optimiser and RNG states, the loop's state) when
    `every_seconds` have passed since `last_checkpoint`; returns when the latest one was written."""
    if time.perf_counter() - last_checkpoint < every_seconds:
        return last_checkpoint
    files.save_torch(path, {"model": head.state_dict(), "optimizer": optimizer.state_dict(), "rng": random_state(),
                            "state": state})
    return time.perf_counter()


def fresh_state() -> dict:
    """The loop's state before its first epoch."""
    return {"epoch": 0, "step": 0, "history": [], "best_score": -np.inf, "best_epoch": 0,
            "best_state": None, "optimistic": None, "last_test": None, "best_dev": None}


def resume_state(checkpoint_path: Path, model: nn.Module, optimizer: Adam) -> dict:
    """The loop's state to continue from: restored, with the model's, optimiser's and RNG states,
    from the checkpoint an interrupted run left at `checkpoint_path`; else a fresh one."""
    if not checkpoint_path.is_file():
        return fresh_state()
    saved = files.load_torch(checkpoint_path)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    _restore_rng(saved["rng"])
    return saved["state"]


@torch.no_grad()
def predict(head: nn.Module, data: TrainingData, rows: np.ndarray, batch_size: int,
            scaler: FeatureScaler | None = None) -> np.ndarray:
    """Head outputs for `rows`, in the order of `rows` → (N, C) float32 numpy (inputs a batch carries
    after its targets, e.g. a teacher's text features, go to the head too)."""
    head.eval()
    groups = sorted_batches(data.lengths[rows], batch_size)  # positions into `rows`, by length
    pieces = [head(x, lengths, *extra).float().cpu()
              for x, lengths, _, *extra in data.batches([rows[g] for g in groups], scaler)]
    outputs = torch.cat(pieces)  # (N, C) in batch order
    restored = torch.empty_like(outputs)
    restored[torch.from_numpy(np.concatenate(groups))] = outputs
    return restored.numpy()


def _score(task, head, data: TrainingData, rows: np.ndarray, batch_size: int,
           scaler: FeatureScaler | None, split: str = "", epoch: int = 0) -> tuple[dict, float, np.ndarray]:
    """(metrics, loss, outputs) of the head on `rows`; DivergedError if an output is not finite."""
    outputs = predict(head, data, rows, batch_size, scaler)
    check_outputs(outputs, split, epoch)
    targets = data.targets[torch.from_numpy(rows).to(data.device)].cpu()
    loss = float(task.loss(torch.from_numpy(outputs), targets))
    return task.evaluate(outputs, targets.numpy()), loss, outputs


def train_epoch(head: nn.Module, optimizer: Adam, task, data: TrainingData, rows: np.ndarray, config: TrainConfig,
                scaler: FeatureScaler | None, state: dict, epoch: int, steps_per_epoch: int) -> tuple[float, float]:
    """One epoch (0-based `epoch`) of updates over `rows`, in the seeded length-bucketed order (with
    `frequency_warp`, its frames warped: frequency_warp.py); state["step"] counts the updates.
    Returns (mean training loss, the last update's learning rate)."""
    recipe = config.recipe
    head.train()
    loss_sum, seen = 0.0, 0
    lr = lr_at(state["step"], recipe, steps_per_epoch)
    batch_rows = [rows[b] for b in bucketed_batches(data.lengths[rows], recipe.batch_size, config.seed, epoch)]
    if recipe.max_steps is not None:
        batch_rows = batch_rows[: recipe.max_steps - state["step"]]
    warp = (FrequencyWarp.for_epoch(config.frequency_warp, config.seed, epoch, len(data.ids))
            if config.frequency_warp else None)
    for x, lengths, targets, *extra in data.batches(batch_rows, scaler, warp):
        lr = lr_at(state["step"], recipe, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = task.loss(head(x, lengths, *extra), targets)
        optimizer.zero_grad()
        loss.backward()
        if recipe.grad_clip is not None:
            nn.utils.clip_grad_norm_(head.parameters(), recipe.grad_clip)
        optimizer.step()
        state["step"] += 1
        step_loss = float(loss.detach())
        check_loss(step_loss, epoch + 1, state["step"], lr)
        loss_sum += step_loss * len(targets)
        seen += len(targets)
    return loss_sum / max(seen, 1), lr


def evaluation_due(steps_before: int, steps_after: int, every: int | None, last_epoch: bool) -> bool:
    """Whether an epoch that took updates (steps_before, steps_after] ends with a dev (and test)
    pass: every epoch without a cadence; with one, the epoch in which an update count k·`every`
    falls, and the last epoch."""
    return not every or last_epoch or steps_after // every > steps_before // every


def _check_same_run(fold_dir: Path, config: dict) -> None:
    saved_path = fold_dir / files.CONFIG
    if saved_path.is_file() and files.read_json(saved_path) != config:
        raise TrainingError(
            f"{fold_dir} holds a run with a different configuration",
            "pass --run-name (or --out) to start a new run, or delete that directory",
        )


@dataclass
class FoldStart:
    """What a fold trains with, once its run directory holds its config.json."""

    task: object
    head: nn.Module
    saved_config: dict
    rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # train, dev, test positions into the data
    config: TrainConfig  # the run's config with the features' defaults resolved (standardize: True/False)


def seeded_head(config: TrainConfig, data: TrainingData, task) -> nn.Module:
    """The run's head, initialised from its seed (every RNG seeded first), on the data's device;
    `config.standardize` already resolved."""
    seed_everything(config.seed)
    return create_head(config.head, data.dim, data.num_layers, task.num_outputs,
                       **head_options(config, is_frontend_cache(data.cache_path))).to(data.device)


def start_fold(config: TrainConfig, data: TrainingData, fold: Fold, out_dir: Path, held: ExitStack) -> FoldStart | dict:
    """Checks, the fitted task, the seeded head, the fold directory's lock and config.json: what
    comes before a fold's first epoch (solo or as a stacked member). A finished fold's metrics.json
    dict instead. `held` keeps the lock until the caller closes it: one process per fold directory
    (features/output_lock.py), so a second `ser train` of the same run is refused at once instead of
    training the fold again and mixing its files with the first one's."""
    if not fold.dev:
        raise TrainingError(f"fold {fold.name} has no dev utterances", "model selection needs a dev set")
    if data.layers != config.layers:
        raise TrainingError(f"the data holds layers {data.layers}, the config asks for {config.layers}")
    if (data.speaker_scaler is not None) != config.per_speaker:
        raise TrainingError(f"the data is {'' if data.speaker_scaler is not None else 'not '}scaled per speaker, "
                            f"the config says per_speaker={config.per_speaker}")
    check_frequency_warp(config.frequency_warp, data.cache_path)
    rows = tuple(data.positions(ids) for ids in (fold.train, fold.dev, fold.test))
    task = data.task.configured(config.recipe.label_smoothing).fitted(data.targets[torch.from_numpy(rows[0])])
    config = dataclasses.replace(config, standardize=resolved_standardize(config.standardize,
                                                                          is_frontend_cache(data.cache_path)))
    # Built before anything is written, so a bad head option leaves no run directory behind.
    head = seeded_head(config, data, task)
    held.enter_context(files.hold_fold(out_dir))
    saved_config = {**config.to_dict(), "fold": fold.name, "dev_split": fold.dev_split,
                    "spec_augment": getattr(head, "spec_augment", None) is not None,
                    "input_projection": getattr(head, "input_projection", None) is not None, "task_state": task.to_dict(),
                    "head_resolved": head.constructor_kwargs,
                    "sizes": {"train": len(rows[0]), "dev": len(rows[1]), "test": len(rows[2])}}
    for note in files.set_aside_damaged(out_dir):
        print(f"note: {note}", file=sys.stderr)
    _check_same_run(out_dir, saved_config)
    if files.is_finished(out_dir):
        return files.read_json(out_dir / files.METRICS)
    if config.recipe.batch_size > len(rows[0]):
        print(f"note: fold {fold.name}: --batch-size {config.recipe.batch_size} is larger than its training part "
              f"({len(rows[0])} utterances), so each epoch is one step", file=sys.stderr)
    files.write_json(out_dir / files.CONFIG, saved_config)
    return FoldStart(task, head, saved_config, rows, config)


def train_fold(
    config: TrainConfig,
    data: TrainingData,
    fold: Fold,
    out_dir: Path,
    progress: ProgressCallback | None = None,
    checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS,
) -> dict:
    """Train one head on one fold and write the fold's run directory; returns metrics.json's dict.

    A resume checkpoint is written after the first epoch and then after any epoch that ends at
    least `checkpoint_seconds` after the previous checkpoint (0: after every epoch).

    A fold whose metrics.json exists is not retrained; a checkpoint left by an interrupted run is
    resumed from its last finished epoch. A fold that another process is training is refused
    (OutputBusyError).
    """
    out_dir = Path(out_dir)
    with ExitStack() as held:  # the fold directory's lock, until its files are written
        started = start_fold(config, data, fold, out_dir, held)
        if isinstance(started, dict):
            return started
        try:
            return _train_started(started, data, fold, out_dir, progress, checkpoint_seconds)
        except DivergedError as error:  # recorded while the fold is still this process's, for `ser report`
            files.write_text(out_dir / files.ERROR, f"{error}\n")
            raise


def _train_started(started: FoldStart, data: TrainingData, fold: Fold, out_dir: Path,
                   progress: ProgressCallback | None, checkpoint_seconds: float) -> dict:
    """`train_fold`'s epochs and files, from `start_fold`'s result (`refit`: then `_refit`'s)."""
    selection_path = out_dir / files.SELECTION
    if started.config.refit and selection_path.is_file():  # the selection phase finished before an interruption
        return _refit(started, data, fold, out_dir, files.load_torch(selection_path), progress, checkpoint_seconds)
    task, head, saved_config, config = started.task, started.head, started.saved_config, started.config
    train_rows, dev_rows, test_rows = started.rows

    recipe = config.recipe
    scaler = data.feature_scaler(train_rows) if config.standardize else None
    optimizer = build_optimizer(head, recipe)
    steps_per_epoch = -(-len(train_rows) // recipe.batch_size)
    total_epochs = recipe.total_epochs(steps_per_epoch)  # a step budget ends inside its last epoch
    eval_batch = 2 * recipe.batch_size
    checkpoint_path = out_dir / files.CHECKPOINT
    state = resume_state(checkpoint_path, head, optimizer)

    last_checkpoint = -math.inf
    for epoch in range(state["epoch"], total_epochs):
        started_at = time.perf_counter()
        steps_before = state["step"]
        train_loss, lr = train_epoch(head, optimizer, task, data, train_rows, config, scaler, state, epoch,
                                     steps_per_epoch)
        if not evaluation_due(steps_before, state["step"], recipe.eval_every_updates, epoch + 1 == total_epochs):
            state["epoch"] = epoch + 1  # tiny epochs under an update cadence: no dev pass this time
            continue
        dev_metrics, dev_loss, _ = _score(task, head, data, dev_rows, eval_batch, scaler, "dev", epoch + 1)
        test_metrics = (_score(task, head, data, test_rows, eval_batch, scaler, "test", epoch + 1)[0]
                        if scores_test(config, len(test_rows), epoch, total_epochs) else None)
        row = {"epoch": epoch + 1, **({"step": state["step"]} if recipe.eval_every_updates else {}),
               "train_loss": train_loss, "dev_loss": dev_loss}
        row.update({f"dev_{name}": dev_metrics[name] for name in task.history_metrics})
        if config.record_test_curve and test_metrics:
            row.update({f"test_{name}": test_metrics[name] for name in task.history_metrics})
        row.update({"lr": lr, "seconds": time.perf_counter() - started_at})
        state["history"].append(row)
        if dev_metrics[task.selection_metric] > state["best_score"]:
            state.update(best_score=dev_metrics[task.selection_metric], best_epoch=epoch + 1, best_dev=dev_metrics,
                         best_state=weights_copy(head))
        record_test(state, test_metrics, epoch, task.selection_metric, config.record_test_curve)
        state["epoch"] = epoch + 1
        last_checkpoint = checkpoint_if_due(checkpoint_path, head, optimizer, state, last_checkpoint,
                                            checkpoint_seconds)
        if progress is not None:
            progress(fold.name, epoch + 1, total_epochs, row)

    if config.refit:
        selection = _selection_record(task, head, data, state, scaler, started.rows, eval_batch)
        files.save_torch(selection_path, selection)
        checkpoint_path.unlink(missing_ok=True)
        return _refit(started, data, fold, out_dir, selection, progress, checkpoint_seconds)
    return write_fold_results(config, data, task, head, state, saved_config, scaler, test_rows, out_dir,
                              dev_rows=dev_rows)


def _selection_record(task, head: nn.Module, data: TrainingData, state: dict, scaler: FeatureScaler | None,
                      rows: tuple[np.ndarray, np.ndarray, np.ndarray], batch_size: int) -> dict:
    """What a refit keeps of its selection phase (selection.pt): the loop's state without weights,
    the dev-selected weights' test metrics (metrics.json's `test_before_refit`) and their dev
    outputs (N_dev, C), which the temperature is fitted on."""
    _, dev_rows, test_rows = rows
    head.load_state_dict(state["best_state"])
    test = (_score(task, head, data, test_rows, batch_size, scaler, "test", state["best_epoch"])[0]
            if len(test_rows) else None)
    dev_outputs = _score(task, head, data, dev_rows, batch_size, scaler, "dev", state["best_epoch"])[2]
    return {"state": {**state, "best_state": None}, "test": test, "dev_outputs": torch.from_numpy(dev_outputs)}


def _refit(started: FoldStart, data: TrainingData, fold: Fold, out_dir: Path, selection: dict,
           progress: ProgressCallback | None, checkpoint_seconds: float) -> dict:
    """`--refit`: a fresh head from the same seed, trained on train + dev for the epochs that dev
    chose (its learning-rate schedule as long as the selection phase's, in epochs) and scored once
    on test, as the probe refits with the C that dev chose. history.csv stays the selection phase's;
    refit_history.csv holds the refit's epochs. The task stays as fitted on the training part (a
    dimensional run's target normalisation). Resumable from refit_checkpoint.pt."""
    config, task = started.config, started.task
    train_rows, dev_rows, test_rows = started.rows
    rows = np.concatenate([train_rows, dev_rows])
    epochs = selection["state"]["best_epoch"]
    scaler = data.feature_scaler(rows) if config.standardize else None
    head = seeded_head(config, data, task)
    optimizer = build_optimizer(head, config.recipe)
    steps_per_epoch = -(-len(rows) // config.recipe.batch_size)
    checkpoint_path = out_dir / files.REFIT_CHECKPOINT
    state = resume_state(checkpoint_path, head, optimizer)
    last_checkpoint = -math.inf
    for epoch in range(state["epoch"], epochs):
        started_at = time.perf_counter()
        train_loss, lr = train_epoch(head, optimizer, task, data, rows, config, scaler, state, epoch, steps_per_epoch)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "lr": lr, "seconds": time.perf_counter() - started_at}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        last_checkpoint = checkpoint_if_due(checkpoint_path, head, optimizer, state, last_checkpoint,
                                            checkpoint_seconds)
        if progress is not None:  # its own name and columns: trackers keep the selection phase's series apart
            progress(f"{fold.name} refit", epoch + 1, epochs,
                     {f"refit_{name}": value for name, value in row.items() if name != "epoch"})
    files.write_csv(out_dir / files.REFIT_HISTORY, pd.DataFrame(state["history"]))
    refitted = {**selection["state"], "best_state": weights_copy(head)}
    refit = {"refit": {"epochs": epochs, "utterances": len(rows),
                       "temperature": "fitted on dev outputs of the dev-selected weights, before the refit"},
             "test_before_refit": selection["test"]}
    return write_fold_results(config, data, task, head, refitted, started.saved_config, scaler, test_rows, out_dir,
                              dev_rows=dev_rows, dev_outputs=selection["dev_outputs"].numpy(), refit=refit)


def scores_test(config: TrainConfig, test_size: int, epoch: int, total_epochs: int) -> bool:
    """Whether epoch `epoch` (0-based) scores test: the last epoch, or every one with record_test_curve."""
    return test_size > 0 and (config.record_test_curve or epoch + 1 == total_epochs)


def record_test(state: dict, test_metrics: dict | None, epoch: int, selection_metric: str, curve: bool) -> None:
    """Keep an epoch's test metrics (None: not scored this epoch) as the last ones and, with the
    curve, as the optimistic best so far."""
    if test_metrics is None:
        return
    state["last_test"] = test_metrics
    optimistic = state["optimistic"]
    if curve and (optimistic is None or test_metrics[selection_metric] > optimistic[selection_metric]):
        state["optimistic"] = {**test_metrics, "epoch": epoch + 1}


def write_fold_results(config: TrainConfig, data: TrainingData, task, head: nn.Module, state: dict,
                       saved_config: dict, scaler: FeatureScaler | None, test_rows: np.ndarray, out_dir: Path,
                       dev_rows: np.ndarray | None = None, dev_outputs: np.ndarray | None = None,
                       refit: dict | None = None) -> dict:
    """The finished fold's files from the training state: the dev-selected weights are loaded into
    `head` and scored on test; a categorical fold's temperature is fitted on `dev_rows`
    (calibration.json: on the head's outputs there, or on `dev_outputs` when given); `refit`'s
    entries join metrics.json, which is written last; the resume files are removed. Returns
    metrics.json's dict."""
    head.load_state_dict(state["best_state"])
    metrics = {"test": None, "dev": state["best_dev"], "best_epoch": state["best_epoch"], "test_last": None,
               "note": "no test set: trained on every labelled utterance"}
    files.write_csv(out_dir / files.HISTORY, pd.DataFrame(state["history"]))
    if len(test_rows):  # a fold without test (`--fold none`) has neither test metrics nor predictions
        test_metrics, _, test_outputs = _score(task, head, data, test_rows, 2 * config.recipe.batch_size, scaler,
                                               "test", state["best_epoch"])
        targets = data.targets[torch.from_numpy(test_rows).to(data.device)].cpu().numpy()
        metrics = {"test": test_metrics, "dev": state["best_dev"], "best_epoch": state["best_epoch"],
                   "test_last": state["last_test"]}
        if state["optimistic"] is not None:  # record_test_curve only
            metrics["test_best_epoch_optimistic"] = {**state["optimistic"], "note": "max over epochs of test "
                                                     f"{task.selection_metric}: optimistic, for comparison with papers only"}
        files.write_csv(out_dir / files.PREDICTIONS, task.predictions([data.ids[r] for r in test_rows], test_outputs, targets))
    if dev_rows is not None and task.name == "categorical":  # temperature scaling, fitted on dev (calibration.py)
        if dev_outputs is None:
            dev_outputs = _score(task, head, data, dev_rows, 2 * config.recipe.batch_size, scaler, "dev",
                                 state["best_epoch"])[2]
        dev_targets = data.targets[torch.from_numpy(dev_rows).to(data.device)].cpu().numpy()
        tested = (test_outputs, targets) if len(test_rows) else (None, None)
        metrics["calibration"] = fold_calibration(dev_outputs, dev_targets, *tested)
        files.write_calibration(out_dir, metrics["calibration"]["temperature"])
    layer_indices = config.layers if config.layers is not None else list(range(data.num_layers))
    files.write_json(out_dir / files.LAYER_WEIGHTS,
                     {"layers": layer_indices, "weights": head.layer_weights().detach().cpu().tolist()})
    files.write_model(out_dir / files.MODEL, head, config.head, data.dim, data.num_layers, task.num_outputs,
                      saved_config, scaler)
    files.write_features_record(out_dir / files.FEATURES, data.cache_path)
    metrics.update(refit or {})
    files.write_json(out_dir / files.METRICS, metrics)
    for name in files.RESUME_FILES:
        (out_dir / name).unlink(missing_ok=True)
    return metrics
