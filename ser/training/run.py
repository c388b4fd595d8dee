"""`ser train` top-down: resolve a run's inputs in the workspace once, load the data, choose the
folds, train each with the loop, and write the run directory (and summary.json for all folds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ser.data.fold import Fold
from ser.data.manifest import not_a_manifest
from ser.data.workspace import Workspace
from ser.errors import UserInputError
from ser.training import run_dir as files
from ser.training.allocator import PhaseMemory
from ser.training.config import TrainConfig
from ser.training.fold_workers import train_folds_side_by_side
from ser.training.loading import load_training_data
from ser.training.loop import ProgressCallback, train_fold
from ser.training.protocol import NO_TEST, fold_dir_of, no_test_fold, protocol_folds, select_folds
from ser.training.tracking import open_tracker
from ser.training.training_data import TrainingData
from ser.training.worker_processes import fork_is_safe


def train_folds(
    config: TrainConfig,
    data: TrainingData,
    run_dir: Path,
    which: str = "all",
    progress: ProgressCallback | None = None,
    log: str | None = None,
    jobs: int = 1,
) -> dict[str, dict]:
    """Train the selected folds into run_dir/fold<K>/ (`none`: run_dir/full/, no test); `all` also
    writes summary.json. `log`: tensorboard | mlflow records each fold's epochs and final metrics
    (tracking.py). `jobs` > 1 trains the folds side by side in forked one-thread workers
    (fold_workers.py; a CPU cache held in memory only).

    Returns {fold directory name: metrics}.
    """
    chosen = [(0, no_test_fold(config, data))] if which == NO_TEST else select_folds(protocol_folds(config, data), which)

    def train_one(index: int, fold: Fold, fold_progress: ProgressCallback | None) -> tuple[str, dict]:
        fold_name = fold_dir_of(fold, index)
        fold_dir, name = Path(run_dir) / fold_name, f"{Path(run_dir).name}/{fold_name}"
        finished = files.is_finished(fold_dir)
        kind = None if finished else log  # a finished fold is not logged again
        with open_tracker(kind, fold_dir, name, f"ser/{config.corpus}/{config.model}",
                          {**config.to_dict(), "fold": fold.name}) as tracker:
            with PhaseMemory() as memory:  # the heap's free pages go back to the system after each fold
                metrics = train_fold(config, data, fold, fold_dir, tracker.progress(fold_progress))
            tracker.log_final(metrics)
        if not finished:
            files.write_memory(fold_dir, memory.figures)
        return fold_name, metrics

    if jobs > 1 and len(chosen) > 1:
        if not fork_is_safe(data.device, data.streamed, torch.get_num_threads()):
            raise UserInputError(
                f"--jobs {jobs} needs Linux, the CPU, the cache in memory and one thread per fold: folds train in "
                "worker processes forked from this one",
                "use --jobs 1 with --threads, a GPU or --stream (`ser sweep` runs in parallel on a GPU)")
        results = train_folds_side_by_side(chosen, train_one, min(jobs, len(chosen)), progress)
    else:
        results = dict(train_one(index, fold, progress) for index, fold in chosen)
    if which == "all":
        files.write_json(Path(run_dir) / files.SUMMARY, files.fold_summary(results, run_dir))
    return results


def find_test_cache(workspace: Workspace, test_manifest: Path, model: str) -> tuple[str, Path]:
    """(test corpus, its cache of `model`: cache/<test corpus>/<model>.h5) of a cross-corpus test manifest."""
    test_manifest = Path(test_manifest)
    if not test_manifest.is_file():
        raise not_a_manifest(test_manifest, "check the --test-manifest path", what="test manifest")
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
    log: str | None = None,
    jobs: int = 1,
) -> tuple[Path, dict[str, dict]]:
    """`ser train`: resolve manifest and cache in the workspace, load them once, train the folds
    (`jobs` > 1: side by side, see train_folds).

    Returns (run directory, {fold directory name: metrics}).
    """
    if config.per_speaker and which == NO_TEST:
        raise UserInputError("--fold none trains the model to deploy, and a --per-speaker run cannot predict a new voice",
                             "drop --per-speaker, or train folds (--fold all) to measure it")
    workspace = Workspace(Path(workdir))
    inputs = workspace.training_inputs(manifest, model)
    config = dataclasses.replace(config, model=inputs.model, corpus=inputs.corpus)
    config, test_cache = with_test_corpus(workspace, config)
    data = load_training_data(inputs.manifest, inputs.cache, config.task, config.layers, device, stream,
                              test_manifest=config.test_manifest, test_cache=test_cache, label_map=config.label_map,
                              per_speaker=config.per_speaker)
    default_name = config.run_name() + ("-full" if which == NO_TEST else "")  # the deployable model: its own run
    run_dir = Path(out) if out is not None else workspace.runs_root(inputs.corpus, inputs.model) / (run_name or default_name)
    return run_dir, train_folds(config, data, run_dir, which, progress, log, jobs)
