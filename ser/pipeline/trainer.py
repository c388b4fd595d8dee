"""Train heads from an in-memory cache: one fold (`train_fold`) or a whole protocol (`train_folds`).

The loop is task-agnostic: the task (tasks.py) supplies targets, loss and metrics. Model
selection uses dev only (`task.selection_metric`, higher is better); test is scored every
epoch just to log history and the labelled optimistic number, and the reported test metrics
come from the dev-selected epoch. After every epoch a checkpoint (model, optimiser, RNG
states, history, best-dev state) replaces the previous one, so rerunning an interrupted
command continues where it stopped and ends with the same metrics.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ser.errors import TrainingError, UserInputError
from ser.heads import create_head, parse_proportion
from ser.pipeline import run_dir as files
from ser.pipeline.batching import bucketed_batches, sorted_batches
from ser.pipeline.folds import Fold, cross_corpus_fold, make_folds
from ser.pipeline.recipes import Recipe, build_optimizer, lr_at, recipe_for
from ser.pipeline.training_data import FeatureScaler, TrainingData, load_training_data
from ser.pipeline.workspace import Workspace

RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))
CROSS_CORPUS_FIELDS = ("test_manifest", "test_corpus", "label_map")
CHECKPOINT_EVERY_SECONDS = 30.0  # a resume checkpoint (weights + optimiser state) costs ~0.2 s at D=768


@dataclass(frozen=True)
class TrainConfig:
    """One run: head + its options, the recipe (paper defaults + overrides), protocol, seed."""

    head: str
    head_kwargs: dict = field(default_factory=dict)  # only options that were set (None = head default)
    recipe: Recipe = field(default_factory=Recipe)
    seed: int = 0
    task: str = "categorical"
    layers: list[int] | None = None  # None = every layer of the cache
    folds: str | None = None  # fold scheme; None = the corpus default
    k: int | None = None
    dev: str = "random"
    dev_fraction: float = 0.2
    fold_seed: int = 0  # the protocol stays fixed while the training seed varies
    standardize: bool = False  # per-layer, per-channel z-scores with the fold's training statistics
    model: str | None = None  # the cache's model alias (informational)
    corpus: str | None = None
    text_model: str | None = None  # a teacher's text cache model (teacher.py); None = audio only
    test_manifest: str | None = None  # cross-corpus: test on this manifest's corpus (training_data.py)
    test_corpus: str | None = None
    label_map: dict[str, str | None] | None = None  # test label → training label (None: drop)

    @classmethod
    def create(cls, head: str, head_kwargs: dict | None = None, **options) -> "TrainConfig":
        """The head's paper recipe with every non-None recipe option in `options` applied."""
        recipe_options = {name: options.pop(name) for name in RECIPE_FIELDS if name in options}
        recipe = recipe_for(head).with_overrides(**recipe_options)
        set_kwargs = {key: value for key, value in (head_kwargs or {}).items() if value is not None}
        unset = [name for name, value in options.items() if value is None]
        for name in unset:
            del options[name]
        return cls(head=head, head_kwargs=set_kwargs, recipe=recipe, **options)

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    def to_dict(self) -> dict:
        """Flat dict: the recipe's fields sit beside the run's own (epochs, lr, batch_size, …)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "recipe"}
        data["head_kwargs"] = dict(self.head_kwargs)
        data["layers"] = None if self.layers is None else list(self.layers)
        for name in CROSS_CORPUS_FIELDS:  # absent unless set: configs of in-corpus runs stay as they were
            if data[name] is None:
                del data[name]
        if self.label_map is not None:
            data["label_map"] = dict(self.label_map)
        return {**data, **self.recipe.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        own = {f.name for f in dataclasses.fields(cls)} - {"recipe"}
        recipe = Recipe.from_dict({name: data[name] for name in RECIPE_FIELDS})
        return cls(recipe=recipe, **{name: data[name] for name in own if name in data})

    def run_name(self) -> str:
        """A readable default run name from the head, the options that differ from its recipe and
        the seed, e.g. `shiftcnn-p1_16-residual-s0`."""
        parts = [self.head]
        kwargs = dict(self.head_kwargs)
        if "shift_proportion" in kwargs:
            parts.append("p" + str(kwargs.pop("shift_proportion")).replace("/", "_"))
        if "shift_placement" in kwargs:
            parts.append(str(kwargs.pop("shift_placement")))
        if "shift_bidirectional" in kwargs:
            parts.append("bi" if kwargs.pop("shift_bidirectional") else "uni")
        if "shift_stride" in kwargs:
            parts.append(f"stride{kwargs.pop('shift_stride')}")
        parts += [f"{key}{value}" for key, value in sorted(kwargs.items())]
        paper = recipe_for(self.head)
        short = {"epochs": "e", "batch_size": "bs", "lr": "lr", "weight_decay": "wd", "label_smoothing": "ls"}
        for name, prefix in short.items():
            if getattr(self.recipe, name) != getattr(paper, name):
                parts.append(f"{prefix}{getattr(self.recipe, name):g}")
        if self.layers is not None:
            parts.append("L" + "_".join(map(str, self.layers)))
        if self.folds is not None:
            parts.append(self.folds + (str(self.k) if self.k else ""))
        if self.dev != "random":
            parts.append(f"dev{self.dev}")
        if self.standardize:
            parts.append("std")
        if self.task != "categorical":
            parts.append(self.task)
        parts.append(f"s{self.seed}")
        if self.test_corpus is not None:
            parts.append(f"x{self.test_corpus}")
        name = "-".join(parts)
        return "".join(c if c.isalnum() or c in "._-=" else "_" for c in name)


def head_constructor_options(head_kwargs: dict) -> dict:
    """The run's head options as the head constructors name them: `shift_proportion` (1/8, per
    direction) → `n_div`, `shift_bidirectional` → `bidirectional`; the rest pass through."""
    options = dict(head_kwargs)
    if "shift_proportion" in options:
        options["n_div"] = parse_proportion(options.pop("shift_proportion"))
    if "shift_bidirectional" in options:
        options["bidirectional"] = options.pop("shift_bidirectional")
    return options


# (fold name, finished epoch (1-based), total epochs, history row)
ProgressCallback = Callable[[str, int, int, dict], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
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
           scaler: FeatureScaler | None) -> tuple[dict, float, np.ndarray]:
    """(metrics, loss, outputs) of the head on `rows`."""
    outputs = predict(head, data, rows, batch_size, scaler)
    targets = data.targets[torch.from_numpy(rows).to(data.device)].cpu()
    loss = float(task.loss(torch.from_numpy(outputs), targets))
    return task.evaluate(outputs, targets.numpy()), loss, outputs


def _check_same_run(fold_dir: Path, config: dict) -> None:
    saved_path = fold_dir / files.CONFIG
    if saved_path.is_file() and files.read_json(saved_path) != config:
        raise TrainingError(
            f"{fold_dir} holds a run with a different configuration",
            "pass --run-name (or --out) to start a new run, or delete that directory",
        )


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
    resumed from its last finished epoch.
    """
    out_dir = Path(out_dir)
    if not fold.dev:
        raise TrainingError(f"fold {fold.name} has no dev utterances", "model selection needs a dev set")
    if data.layers != config.layers:
        raise TrainingError(f"the data holds layers {data.layers}, the config asks for {config.layers}")
    train_rows, dev_rows, test_rows = (data.positions(ids) for ids in (fold.train, fold.dev, fold.test))
    task = data.task.configured(config.recipe.label_smoothing).fitted(data.targets[torch.from_numpy(train_rows)])
    seed_everything(config.seed)
    options = head_constructor_options(config.head_kwargs)
    # Built before anything is written, so a bad head option leaves no run directory behind.
    head = create_head(config.head, data.dim, data.num_layers, task.num_outputs, **options).to(data.device)
    saved_config = {**config.to_dict(), "fold": fold.name, "task_state": task.to_dict(),
                    "head_resolved": head.constructor_kwargs,
                    "sizes": {"train": len(train_rows), "dev": len(dev_rows), "test": len(test_rows)}}
    if files.is_finished(out_dir):
        _check_same_run(out_dir, saved_config)
        return files.read_json(out_dir / files.METRICS)
    _check_same_run(out_dir, saved_config)
    files.write_json(out_dir / files.CONFIG, saved_config)

    recipe = config.recipe
    scaler = data.feature_scaler(train_rows) if config.standardize else None
    optimizer = build_optimizer(head, recipe)
    steps_per_epoch = -(-len(train_rows) // recipe.batch_size)
    eval_batch = 2 * recipe.batch_size
    state = {"epoch": 0, "step": 0, "history": [], "best_score": -np.inf, "best_epoch": 0,
             "best_state": None, "optimistic": None, "last_test": None, "best_dev": None}
    checkpoint_path = out_dir / files.CHECKPOINT
    if checkpoint_path.is_file():
        saved = files.load_torch(checkpoint_path)
        head.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        _restore_rng(saved["rng"])
        state = saved["state"]

    last_checkpoint = -math.inf
    for epoch in range(state["epoch"], recipe.epochs):
        started = time.perf_counter()
        head.train()
        loss_sum = 0.0
        batch_rows = [train_rows[b] for b in bucketed_batches(data.lengths[train_rows], recipe.batch_size,
                                                               config.seed, epoch)]
        for x, lengths, targets, *extra in data.batches(batch_rows, scaler):
            lr = lr_at(state["step"], recipe, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = task.loss(head(x, lengths, *extra), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(head.parameters(), recipe.grad_clip)
            optimizer.step()
            state["step"] += 1
            loss_sum += float(loss.detach()) * len(targets)
        dev_metrics, dev_loss, _ = _score(task, head, data, dev_rows, eval_batch, scaler)
        test_metrics, _, _ = _score(task, head, data, test_rows, eval_batch, scaler)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / len(train_rows), "dev_loss": dev_loss}
        row.update({f"dev_{name}": dev_metrics[name] for name in task.history_metrics})
        row.update({f"test_{name}": test_metrics[name] for name in task.history_metrics})
        row.update({"lr": lr, "seconds": time.perf_counter() - started})
        state["history"].append(row)
        if dev_metrics[task.selection_metric] > state["best_score"]:
            state.update(best_score=dev_metrics[task.selection_metric], best_epoch=epoch + 1, best_dev=dev_metrics,
                         best_state={k: v.detach().cpu().clone() for k, v in head.state_dict().items()})
        optimistic = state["optimistic"]
        if optimistic is None or test_metrics[task.selection_metric] > optimistic[task.selection_metric]:
            state["optimistic"] = {**test_metrics, "epoch": epoch + 1}
        state["last_test"] = test_metrics
        state["epoch"] = epoch + 1
        if time.perf_counter() - last_checkpoint >= checkpoint_seconds:
            files.save_torch(checkpoint_path, {"model": head.state_dict(), "optimizer": optimizer.state_dict(),
                                               "rng": _rng_state(), "state": state})
            last_checkpoint = time.perf_counter()
        if progress is not None:
            progress(fold.name, epoch + 1, recipe.epochs, row)

    head.load_state_dict(state["best_state"])
    test_metrics, _, test_outputs = _score(task, head, data, test_rows, eval_batch, scaler)
    targets = data.targets[torch.from_numpy(test_rows).to(data.device)].cpu().numpy()
    metrics = {
        "test": test_metrics,
        "dev": state["best_dev"],
        "best_epoch": state["best_epoch"],
        "test_last": state["last_test"],
        "test_best_epoch_optimistic": {**state["optimistic"], "note": "max over epochs of test "
                                       f"{task.selection_metric}: optimistic, for comparison with papers only"},
    }
    files.write_csv(out_dir / files.HISTORY, pd.DataFrame(state["history"]))
    files.write_csv(out_dir / files.PREDICTIONS, task.predictions([data.ids[r] for r in test_rows], test_outputs, targets))
    layer_indices = config.layers if config.layers is not None else list(range(data.num_layers))
    files.write_json(out_dir / files.LAYER_WEIGHTS,
                     {"layers": layer_indices, "weights": head.layer_weights().detach().cpu().tolist()})
    files.write_model(out_dir / files.MODEL, head, config.head, data.dim, data.num_layers, task.num_outputs,
                      saved_config, scaler)
    files.write_json(out_dir / files.METRICS, metrics)
    checkpoint_path.unlink(missing_ok=True)
    return metrics


def protocol_folds(config: TrainConfig, data: TrainingData) -> list[Fold]:
    """The folds of the config's protocol over the usable utterances (cross-corpus data: one fold,
    `cross-<test corpus>`, training and dev from the training corpus, test = the whole test corpus)."""
    if data.cross is not None:
        return [cross_corpus_data_fold(config, data)]
    return make_folds(data.labelled_table, scheme=config.folds, k=config.k, seed=config.fold_seed, dev=config.dev,
                      dev_fraction=config.dev_fraction, label_column=data.task.fold_label_column)


def cross_corpus_data_fold(config: TrainConfig, data: TrainingData) -> Fold:
    """The one fold of cross-corpus data: dev = a seeded share of the training corpus (per `config.dev`)."""
    if config.folds is not None or config.k is not None:
        raise UserInputError("--folds and --k do not apply with --test-manifest",
                             "cross-corpus training has one fold: the whole test corpus")
    split = data.cross.train_rows
    fold = cross_corpus_fold(data.table.iloc[:split], data.table.iloc[split:], seed=config.fold_seed, dev=config.dev,
                             dev_fraction=config.dev_fraction, label_column=data.task.fold_label_column)
    return dataclasses.replace(fold, name=f"cross-{data.cross.test_corpus}")


def select_folds(folds: list[Fold], which: str) -> list[tuple[int, Fold]]:
    """`all`, a fold name (a session, a speaker, …) or a fold number K as in `fold<K>` (1-based)
    → [(0-based position, fold)]."""
    if which == "all":
        return list(enumerate(folds))
    for index, fold in enumerate(folds):
        if which == fold.name:
            return [(index, fold)]
    for index, fold in enumerate(folds):
        if which == str(index + 1):
            return [(index, fold)]
    names = ", ".join(f"{i + 1} ({fold.name})" for i, fold in enumerate(folds))
    raise UserInputError(f"no fold {which!r} in this protocol", f"choose all, or a number or name: {names}")


def fold_dir_name(index: int) -> str:
    """The folder of the fold at 0-based position `index`: fold1, fold2, …"""
    return f"fold{index + 1}"


def train_folds(
    config: TrainConfig,
    data: TrainingData,
    run_dir: Path,
    which: str = "all",
    progress: ProgressCallback | None = None,
) -> dict[str, dict]:
    """Train the selected folds into run_dir/fold<K>/; `all` also writes summary.json.

    Returns {fold directory name: metrics}.
    """
    chosen = select_folds(protocol_folds(config, data), which)
    results = {}
    for index, fold in chosen:
        results[fold_dir_name(index)] = train_fold(config, data, fold, Path(run_dir) / fold_dir_name(index), progress)
    if which == "all":
        files.write_json(Path(run_dir) / files.SUMMARY, files.fold_summary(results))
    return results


def find_test_cache(workspace: Workspace, test_manifest: Path, model: str) -> tuple[str, Path]:
    """(test corpus, its cache of `model`: cache/<test corpus>/<model>.h5) of a cross-corpus test manifest."""
    test_manifest = Path(test_manifest)
    if not test_manifest.is_file():
        raise UserInputError(f"test manifest {test_manifest} does not exist", "check the --test-manifest path")
    test_corpus = workspace.corpus_of(test_manifest)
    test_cache = workspace.cache_path(test_corpus, model)
    if not test_cache.is_file():
        raise UserInputError(
            f"no {model} cache for the test corpus {test_corpus!r} at {test_cache}",
            f"run `ser extract --manifest {test_manifest} --model {model}` first",
        )
    return test_corpus, test_cache


def with_test_corpus(workspace: Workspace, config: TrainConfig) -> tuple[TrainConfig, Path | None]:
    """(config with the test manifest's absolute path and its corpus, the test corpus's cache of the
    config's model) for a cross-corpus config; (config, None) otherwise."""
    if config.test_manifest is None:
        return config, None
    test_corpus, test_cache = find_test_cache(workspace, Path(config.test_manifest), config.model)
    config = dataclasses.replace(config, test_manifest=str(Path(config.test_manifest).resolve()),
                                 test_corpus=test_corpus)
    return config, test_cache


def run_training(
    workdir: Path,
    config: TrainConfig,
    which: str = "all",
    manifest: Path | None = None,
    model: str | None = None,
    out: Path | None = None,
    run_name: str | None = None,
    device: str = "auto",
    stream: bool | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[Path, dict[str, dict]]:
    """`ser train`: resolve manifest and cache in the workspace, load them once, train the folds.

    Returns (run directory, {fold directory name: metrics}).
    """
    workspace = Workspace(Path(workdir))
    inputs = workspace.training_inputs(manifest, model)
    config = dataclasses.replace(config, model=inputs.model, corpus=inputs.corpus)
    config, test_cache = with_test_corpus(workspace, config)
    data = load_training_data(inputs.manifest, inputs.cache, config.task, config.layers, device, stream,
                              test_manifest=config.test_manifest, test_cache=test_cache, label_map=config.label_map)
    run_dir = Path(out) if out is not None else workspace.runs_root(inputs.corpus, inputs.model) / (run_name or config.run_name())
    return run_dir, train_folds(config, data, run_dir, which, progress)
