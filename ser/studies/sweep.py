"""`ser sweep`: train every configuration of a grid × fold on ONE loaded copy of the cache.

The cache is loaded once (RAM, or GPU memory when it fits); `jobs` worker processes share it
(forked one-thread workers inherit it, spawned ones read it through torch's shared memory) and
train runs concurrently. Each run × fold writes its own run
directory (the trainer's contract), so a finished run is skipped when the sweep is started again
and an interrupted one resumes from its checkpoint; a failed run writes `error.txt` and the sweep
goes on. After every finished run the sweep rewrites `sweep.csv` (one row per run × fold) and
`sweep_summary.csv/.json` (mean ± std over folds and seeds per configuration) atomically. A run
that another process is training is counted failed and left to it (one process per fold); the
final tables read every run from its folder again, so two sweeps started on one folder share its
runs and the last to finish lists them all as they are.

Runs of one head family that share a graph train together as stacked models (batched_runs.py)
when `batch_runs` is "on", or "auto" on a GPU: there one large stacked model at a time trains in
this process; on CPU the stacked models are cut so that every worker gets one, and they share the
pool with the runs that train alone. On CPU "auto" trains one by one: stacking the CNN family
saves no arithmetic there (benchmarks/sweep.py, 2 cores: batched / one by one = 0.97-1.07 on fbank
and on a wavlm-base-shaped cache), and a run trained alone gives the same numbers as `ser train`.
Stacked linear probes average over time before their Linear, so `--batch-runs on` pays on CPU too.

Determinism: every run seeds its own generators and runs with the same intra-op thread count
(`threads`, default 1 per run trained alone), so its numbers do not depend on `jobs` or on scheduling.

Past one machine: `backend="ray"` sends every run × fold to a Ray cluster (backends/ray_backend.py),
and `shard` trains one share of the grid for array jobs whose tables `--collect` merges (shard.py, collect.py);
Ray tasks train every run alone, a shard batches its own share like a local sweep.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any, Callable

import pandas as pd
import torch

from ser.data.atomic_files import write_text
from ser.data.workspace import Workspace
from ser.errors import UserInputError
from ser.heads import HEADS
from ser.studies import results
from ser.studies.backends.ray_backend import run_on_ray
from ser.studies.batched_runs import plan_batches, run_chunk_in_worker, run_chunks
from ser.studies.grid import HEAD_OPTION_PREFIX, Grid
from ser.studies.shard import Shard
from ser.studies.stopping import SweepStopped, kill_processes, stop_on_signals
from ser.studies.sweep_progress import SweepProgress
from ser.studies.sweep_worker import ERROR_FILE, RunOutcome, RunTask, init_worker, run_in_worker, run_task
from ser.training import run_dir as files
from ser.training.cache_access import available_ram_bytes
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.protocol import fold_dir_name, protocol_folds, select_folds
from ser.training.run import find_test_cache
from ser.training.training_data import TrainingData
from ser.training.worker_processes import fork_is_safe

HEAD_AXES = ("shift_proportion", "shift_placement", "shift_bidirectional", "shift_stride")
RECIPE_AXES = ("epochs", "lr", "batch_size", "weight_decay")
WORKER_RAM_BYTES = 1_500_000_000  # a worker process: torch + one small head's activations
GPU_JOBS = 4  # concurrent heads on one GPU; a small head leaves most of it idle
BACKENDS = ("local", "ray")  # worker processes on this machine | Ray tasks on a cluster


@dataclass(frozen=True)
class SweepSettings:
    """What is the same for every run of a sweep (the grid says what varies)."""

    workdir: Path = Path(".")
    manifest: Path | None = None
    model: str | None = None
    out: Path | None = None  # default: runs/<corpus>/<model>/sweep
    device: str = "auto"
    jobs: int | None = None  # None: from the device and the free memory
    threads: int | None = None  # per worker (None: 1), or of stacked models trained in this process (None: all CPUs)
    batch_runs: str = "auto"  # on | off | auto (on a GPU): runs that share a graph train as one stacked model
    folds: str | None = None  # fold scheme (None: the corpus default)
    k: int | None = None
    dev: str = "auto"  # auto | speaker | random (ser/data/fold.py dev_split)
    record_test_curve: bool = False  # score test every epoch (history, optimistic best epoch)
    per_speaker: bool = False  # every run sees features z-scored per speaker (training/speaker_norm.py)
    refit: bool = False  # every run refits on train + dev for the epochs dev chose (training/loop.py)
    frequency_warp: float = 0.0  # every run warps its training frames' mel channels (training/frequency_warp.py)
    layers: list[int] | None = None
    task: str = "categorical"
    test_manifest: Path | None = None  # cross-corpus: test every run on this manifest's corpus
    label_map: dict[str, str | None] | None = None  # its labels → the training corpus's
    log: str | None = None  # tensorboard | mlflow: each run × fold's epochs and final metrics (tracking.py)
    backend: str = "local"  # see BACKENDS
    address: str | None = None  # Ray: the cluster to join (None: start Ray on this machine)
    gpus_per_run: float = 0.0  # Ray: GPUs per run, fractions share one
    shard: Shard | None = None  # train only this share of the grid (array jobs; see shard.py)


@dataclass
class PlannedRun:
    """One run × fold: its grid values and the trainer's task."""

    point: dict[str, Any]
    task: RunTask


@dataclass
class SweepOutcome:
    sweep_dir: Path
    table_path: Path
    summary_path: Path
    planned: int
    skipped: int
    done: int
    failed: int
    jobs: int  # concurrent runs (local backend)
    diverged: int = 0
    # startup (process start → sweep), load (cache), runs (wall of the training phase, worker
    # start-up included), train (sum of the runs' own durations), wall (all of it)
    seconds: dict[str, float] = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    backend: str = "local"


def train_config(point: dict[str, Any], settings: SweepSettings, corpus: str, model: str,
                 test_corpus: str | None = None) -> TrainConfig:
    """The trainer's config for one grid point (unset options keep the head's paper defaults)."""
    head_kwargs = {name: point.get(name) for name in HEAD_AXES}
    head_kwargs.update({k[len(HEAD_OPTION_PREFIX):]: v for k, v in point.items() if k.startswith(HEAD_OPTION_PREFIX)})
    recipe = {name: point.get(name) for name in RECIPE_AXES}
    return TrainConfig.create(
        point["head"], head_kwargs, **recipe, seed=point.get("seed", 0), standardize=point.get("standardize"),
        task=settings.task, layers=settings.layers, folds=settings.folds, k=settings.k, dev=settings.dev, model=model,
        record_test_curve=settings.record_test_curve, per_speaker=settings.per_speaker, refit=settings.refit,
        frequency_warp=settings.frequency_warp,
        corpus=corpus, label_map=settings.label_map, test_corpus=test_corpus,
        test_manifest=None if settings.test_manifest is None else str(Path(settings.test_manifest).resolve()),
    )


def plan_runs(grid: Grid, settings: SweepSettings, data: TrainingData, sweep_dir: Path, corpus: str,
              model: str) -> list[PlannedRun]:
    """Every grid point × selected fold, in grid order, with its run directory."""
    points = grid.points()
    test_corpus = data.cross.test_corpus if data.cross is not None else None
    configs = [train_config(point, settings, corpus, model, test_corpus) for point in points]
    names = [config.run_name() for config in configs]
    if len(set(names)) != len(names):
        raise UserInputError("two grid points give the same run name", "remove duplicate values from the grid")
    folds = protocol_folds(configs[0], data)
    chosen = [pair for which in (grid.folds or ("all",)) for pair in select_folds(folds, which)]
    planned = []
    for point, config, name in zip(points, configs, names):
        for index, fold in chosen:
            key = f"{name}/{fold_dir_name(index)}"
            planned.append(PlannedRun(point, RunTask(key, config, fold, sweep_dir / key, settings.log)))
    return planned


def default_jobs(data: TrainingData, runs: int) -> int:
    """Concurrent runs: one per CPU core (bounded by free RAM), GPU_JOBS on a GPU, and one when the
    cache is streamed from disk (concurrent runs would only compete for the disk)."""
    if data.streamed:
        jobs = 1
    elif data.device.type == "cuda":
        jobs = GPU_JOBS
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        jobs = min(cores, max(1, available_ram_bytes() // WORKER_RAM_BYTES))
    return max(1, min(jobs, runs))


class SweepTable:
    """The rows of sweep.csv, kept in memory and rewritten after every finished run."""

    def __init__(self, planned: list[PlannedRun], sweep_dir: Path, stem: str = "sweep"):
        self.planned, self.sweep_dir, self.stem = planned, sweep_dir, stem
        self.rows = {run.task.key: self._row(run) for run in planned}

    def _row(self, run: PlannedRun) -> dict[str, Any]:
        row = results.read_run(run.task.out_dir)
        row.update({name: None for name in results.CONFIG_COLUMNS})  # always present, even when unset
        row.update(run.point)
        row.update(seed=run.task.config.seed, fold_name=run.task.fold.name, run_dir=run.task.key)
        return row

    def refresh(self, run: PlannedRun) -> None:
        self.rows[run.task.key] = self._row(run)

    def refresh_all(self) -> None:
        """Every row read again from its folder: another process (a second sweep on this folder)
        may have finished runs this one found busy."""
        for run in self.planned:
            self.refresh(run)

    def frame(self) -> pd.DataFrame:
        return results.order_columns(pd.DataFrame(list(self.rows.values())))

    def write(self, intervals: bool = False) -> tuple[Path, Path]:
        return results.write_tables(self.frame(), self.sweep_dir, self.stem, intervals=intervals)


def write_run_summaries(planned: list[PlannedRun], all_folds: bool) -> None:
    """summary.json beside the fold directories of every run whose folds have all finished."""
    if not all_folds:
        return
    by_run: dict[Path, dict[str, Path]] = {}
    for run in planned:
        by_run.setdefault(run.task.out_dir.parent, {})[run.task.out_dir.name] = run.task.out_dir
    for run_dir, fold_dirs in by_run.items():
        if all(files.is_finished(d) for d in fold_dirs.values()):
            metrics = {name: files.read_json(d / files.METRICS) for name, d in fold_dirs.items()}
            files.write_json(run_dir / files.SUMMARY, files.fold_summary(metrics, run_dir))


def _run_in_process(tasks: list[RunTask], data: TrainingData, threads: int, progress: SweepProgress,
                    finished: Callable[[RunOutcome], None]) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for task in tasks:
            progress.started(task.key)
            finished(run_task(task, data, progress.epoch))
    finally:
        torch.set_num_threads(previous)


def _run_in_pool(work: list[RunTask | list[RunTask]], data: TrainingData, jobs: int, threads: int,
                 progress: SweepProgress, finished: Callable[[RunOutcome], None]) -> None:
    """At most `jobs` items of `work` in flight in worker processes that share `data`: a run, or
    a list of runs that trains as one stacked model. A pool whose worker died is replaced and the
    runs it held are recorded as failed."""
    forked = fork_is_safe(data.device, data.streamed, threads)  # forked workers start in milliseconds
    context = torch.multiprocessing.get_context("fork" if forked else "spawn")
    pending = deque(work)
    while pending:
        events = context.Queue()
        in_flight: dict[Future, list[RunTask]] = {}
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=init_worker,
                                 initargs=(data, threads, events, os.getpid())) as pool:
            try:
                while pending or in_flight:
                    while pending and len(in_flight) < jobs:
                        item = pending.popleft()
                        stacked = isinstance(item, list)
                        future = pool.submit(run_chunk_in_worker if stacked else run_in_worker, item)
                        in_flight[future] = item if stacked else [item]
                        for task in in_flight[future]:
                            progress.started(task.key)
                    ready, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(events, progress)
                    for future in ready:
                        in_flight.pop(future)
                        outcome = future.result()
                        for each in outcome if isinstance(outcome, list) else [outcome]:
                            finished(each)
            except BrokenProcessPool:
                for task in (task for tasks in in_flight.values() for task in tasks):
                    message = "the worker process running this run died (out of memory?)"
                    task.out_dir.mkdir(parents=True, exist_ok=True)
                    (task.out_dir / ERROR_FILE).write_text(message + "\n")
                    finished(RunOutcome(task.key, "failed", 0.0, error=message))
            except SweepStopped:
                kill_processes(list((pool._processes or {}).values()))  # do not wait for their runs
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def _drain(events: Any, progress: SweepProgress) -> None:
    while True:
        try:
            progress.epoch(events.get_nowait())
        except Empty:
            return


def process_age_seconds() -> float:
    """Seconds since this process started (interpreter + imports: the start-up cost), from /proc."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def resolve_inputs(settings: SweepSettings) -> tuple[Path, Path, str, str, Path, Path | None]:
    """(manifest, cache, corpus, model, sweep dir, the test corpus's cache or None)."""
    workspace = Workspace(settings.workdir)
    inputs = workspace.training_inputs(settings.manifest, settings.model)
    manifest, corpus, cache, model = inputs.manifest, inputs.corpus, inputs.cache, inputs.model
    sweep_name, test_cache = "sweep", None
    if settings.test_manifest is not None:
        test_corpus, test_cache = find_test_cache(workspace, settings.test_manifest, model)
        sweep_name = f"sweep-x{test_corpus}"
    if settings.per_speaker:  # its own folder: a plain sweep's table is not overwritten
        sweep_name += "-spk"
    if settings.refit:
        sweep_name += "-refit"
    if settings.frequency_warp:
        sweep_name += f"-fw{settings.frequency_warp:g}"
    sweep_dir = settings.out or workspace.runs_root(corpus, model) / sweep_name
    return manifest, cache, corpus, model, sweep_dir, test_cache


def _batches(batch_runs: str, device: torch.device) -> bool:
    """Whether runs that share a graph train as stacked models (`batch_runs`: on | off | auto)."""
    return batch_runs == "on" or (batch_runs == "auto" and device.type == "cuda")


def run_sweep(grid: Grid, settings: SweepSettings) -> SweepOutcome:
    """Load the cache once, train every planned run × fold not yet finished, write the tables."""
    startup = process_age_seconds()
    started = time.perf_counter()
    if settings.jobs is not None and settings.jobs < 1:
        raise UserInputError("--jobs must be at least 1")
    if settings.threads is not None and settings.threads < 1:
        raise UserInputError("--threads must be at least 1")
    if settings.batch_runs not in ("on", "off", "auto"):  # before the cache is loaded
        raise UserInputError(f"--batch-runs {settings.batch_runs!r} is not on, off or auto")
    if settings.backend not in BACKENDS:
        raise UserInputError(f"unknown sweep backend {settings.backend!r}", f"choose from: {', '.join(BACKENDS)}")
    for head in grid.values("head"):
        HEADS.get(head)  # a misspelt head fails now, with did-you-mean, not as N failed runs
    manifest, cache, corpus, model, sweep_dir, test_cache = resolve_inputs(settings)
    device = "cpu" if settings.backend == "ray" else settings.device  # Ray tasks choose their own
    data = load_training_data(manifest, cache, task=settings.task, layers=settings.layers, device=device,
                              test_manifest=settings.test_manifest, test_cache=test_cache, label_map=settings.label_map,
                              per_speaker=settings.per_speaker)
    load_seconds = time.perf_counter() - started
    planned = plan_runs(grid, settings, data, sweep_dir, corpus, model)
    share = settings.shard.take(planned) if settings.shard else planned
    todo = [run for run in share if not files.is_finished(run.task.out_dir)]
    jobs = settings.jobs or default_jobs(data, len(todo))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text(sweep_dir / "sweep.json", json.dumps(
        {"grid": grid.to_dict(), "manifest": str(manifest), "cache": str(cache), "corpus": corpus, "model": model,
         "folds": settings.folds, "k": settings.k, "dev": settings.dev, "layers": settings.layers,
         "task": settings.task, "threads": settings.threads, "batch_runs": settings.batch_runs,
         **({"test_manifest": str(settings.test_manifest), "label_map": settings.label_map}
            if settings.test_manifest is not None else {}),
         **({"per_speaker": True} if settings.per_speaker else {}), **({"refit": True} if settings.refit else {}),
         **({"frequency_warp": settings.frequency_warp} if settings.frequency_warp else {})},
        indent=2))
    table = SweepTable(share, sweep_dir, settings.shard.table_stem if settings.shard else "sweep")
    table.write()
    by_key = {run.task.key: run for run in planned}
    train_seconds = 0.0
    counts = {"done": 0, "failed": 0, "diverged": 0}

    def finished(outcome: RunOutcome) -> None:
        nonlocal train_seconds
        train_seconds += outcome.seconds
        counts[outcome.status] += 1
        table.refresh(by_key[outcome.key])
        table.write()
        progress.finished(outcome)

    tasks = [run.task for run in todo]
    run_started = time.perf_counter()
    threads = settings.threads or 1
    with stop_on_signals(), SweepProgress(len(todo), len(share) - len(todo)) as progress:
        chunks: list[list[RunTask]] = []
        if _batches(settings.batch_runs, data.device) and settings.backend == "local":
            plan = plan_batches(tasks, data, workers=jobs if data.device.type == "cpu" else 1)
            for note in plan.notes:
                progress.note(note)
            chunks, tasks = plan.chunks, plan.solo
        work = [*chunks, *tasks]  # the stacked models first: the longest items
        if settings.backend == "ray":
            run_on_ray(tasks, data, finished, address=settings.address, threads=threads,
                       gpus_per_run=settings.gpus_per_run)
        elif data.device.type == "cpu" and jobs > 1 and len(work) > 1:  # stacked models share the worker pool
            _run_in_pool(work, data, min(jobs, len(work)), threads, progress, finished)
        else:  # a GPU trains its stacked models in this process, one large model at a time
            run_chunks(chunks, data, settings.threads, progress, finished)
            if jobs > 1 and len(tasks) > 1:
                _run_in_pool(tasks, data, min(jobs, len(tasks)), threads, progress, finished)
            else:
                _run_in_process(tasks, data, threads, progress, finished)
    run_seconds = time.perf_counter() - run_started
    write_run_summaries(planned, grid.folds is None)
    table.refresh_all()
    table_path, summary_path = table.write(intervals=True)  # bootstrap intervals once, at the end
    return SweepOutcome(
        sweep_dir=sweep_dir, table_path=table_path, summary_path=summary_path, planned=len(share),
        skipped=len(share) - len(todo), done=counts["done"], failed=counts["failed"], jobs=jobs,
        diverged=counts["diverged"],
        seconds={"startup": startup, "load": load_seconds, "runs": run_seconds, "train": train_seconds,
                 "wall": startup + time.perf_counter() - started},
        summary=results.summarize(table.frame()), backend=settings.backend,
    )
