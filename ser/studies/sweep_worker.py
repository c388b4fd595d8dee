"""The worker side of a sweep: train one run × fold on the shared, already-loaded TrainingData.

Worker processes receive the TrainingData once, when they start (its tensors travel through
torch's shared-memory pickling, so every worker reads the same copy of the cache), then train
one `RunTask` after another. A failure never escapes: it is written to `error.txt` in the run
directory (unless another process is training that run) and returned as a failed `RunOutcome`,
so one bad run does not stop the sweep.
"""

from __future__ import annotations

import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ser.data.fold import Fold
from ser.errors import DivergedError, OutputBusyError, SerError
from ser.studies.stopping import SweepStopped
from ser.training import run_dir as files
from ser.training.allocator import PhaseMemory, keep_freed_blocks
from ser.training.config import TrainConfig
from ser.training.loop import train_fold
from ser.training.tracking import open_tracker
from ser.training.worker_processes import die_with_parent
from ser.training.training_data import TrainingData

ERROR_FILE = "error.txt"
# (run key, finished epoch, total epochs) — how a worker reports progress to the sweep
EpochEvent = tuple[str, int, int]


@dataclass(frozen=True)
class RunTask:
    """One run × fold of a sweep."""

    key: str  # "<run-name>/fold<K>", unique within the sweep
    config: TrainConfig
    fold: Fold
    out_dir: Path
    log: str | None = None  # tensorboard | mlflow (ser.training.tracking)


@dataclass(frozen=True)
class RunOutcome:
    key: str
    status: str  # "done" | "failed" | "diverged"
    seconds: float
    metrics: dict | None = None
    error: str | None = None


class WorkerState:
    """What a worker process keeps between tasks (set once by the pool's initializer)."""

    data: TrainingData | None = None
    events: Any = None  # a multiprocessing queue of EpochEvent, or None


def init_worker(data: TrainingData, threads: int, events: Any, parent_pid: int | None = None) -> None:
    """Pool initializer: die with the parent, keep freed blocks (a spawned worker did not run the
    CLI's start-up), pin the intra-op thread count and keep the shared data."""
    die_with_parent(parent_pid)
    keep_freed_blocks()
    torch.set_num_threads(threads)
    WorkerState.data = data
    WorkerState.events = events


def describe_error(error: BaseException) -> str:
    """First line: the error the way the CLI would print it; then the traceback."""
    if isinstance(error, SerError):
        first = error.message + (f" (hint: {error.hint})" if error.hint else "")
    else:
        first = f"{type(error).__name__}: {error}"
    return first + "\n\n" + "".join(traceback.format_exception(error))


def run_task(task: RunTask, data: TrainingData, on_epoch: Callable[[EpochEvent], None] | None = None) -> RunOutcome:
    """Train `task` on `data`; failures are recorded (`record_failure`) and returned. The fold's lock
    is taken first and held until its error.txt is written: a fold that another process is training
    is left as it is, its tracker never opened."""
    started = time.perf_counter()

    def progress(_fold: str, epoch: int, total: int, _row: dict) -> None:
        if on_epoch is not None:
            on_epoch((task.key, epoch, total))

    with ExitStack() as held:
        try:
            held.enter_context(files.hold_fold(task.out_dir))
            (task.out_dir / ERROR_FILE).unlink(missing_ok=True)
            with open_tracker(task.log, task.out_dir, task.key, f"ser/{task.config.corpus}/{task.config.model}",
                              {**task.config.to_dict(), "fold": task.fold.name}) as tracker:
                finished = files.is_finished(task.out_dir)
                with PhaseMemory() as memory:  # the heap's free pages go back to the system after each run
                    metrics = train_fold(task.config, data, task.fold, task.out_dir, tracker.progress(progress))
                if not finished:
                    files.write_memory(task.out_dir, memory.figures)
                tracker.log_final(metrics)
        except SweepStopped:
            raise
        except Exception as error:  # noqa: BLE001 — any failure of one run is recorded, not raised
            return record_failure(task, error, time.perf_counter() - started)
    return RunOutcome(task.key, "done", time.perf_counter() - started, metrics=metrics)


def record_failure(task: RunTask, error: BaseException, seconds: float) -> RunOutcome:
    """The failed (or diverged) outcome of `task`, its reason written to `error.txt` in the run
    directory, unless another process is training that run (OutputBusyError): its directory is
    not this sweep's to write."""
    message = describe_error(error)
    if not isinstance(error, OutputBusyError):
        task.out_dir.mkdir(parents=True, exist_ok=True)
        (task.out_dir / ERROR_FILE).write_text(message)
    status = "diverged" if isinstance(error, DivergedError) else "failed"
    return RunOutcome(task.key, status, seconds, error=message.splitlines()[0])


def run_in_worker(task: RunTask) -> RunOutcome:
    """Entry point executed inside a pool worker."""
    events = WorkerState.events
    return run_task(task, WorkerState.data, events.put if events is not None else None)
