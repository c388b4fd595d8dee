"""Training a run's folds side by side in forked worker processes (`ser train --jobs N`).

The folds are dealt out round robin to `jobs` workers forked from this process, so every worker
already holds the loaded cache. Each trains its folds one after another on one thread, exactly
as `ser train --fold K --threads 1` would. Epoch progress and results come back through a queue.
A fold that fails does not stop the others; the first failure is raised once every worker is done.
A worker that dies (killed, out of memory) leaves its fold's checkpoint: the same command resumes it.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from typing import Any, Callable

import torch

from ser.data.fold import Fold
from ser.errors import DivergedError, SerError, TrainingError
from ser.training.loop import ProgressCallback
from ser.training.worker_processes import die_with_parent

# train_one(index, fold, progress) → (fold directory name, metrics); runs inside a worker
TrainOne = Callable[[int, Fold, ProgressCallback], tuple[str, dict]]
POLL_SECONDS = 0.5


def _work(share: list[tuple[int, Fold]], train_one: TrainOne, messages: Any, parent_pid: int) -> None:
    """A worker's body: train its share of the folds, reporting epochs, results and failures."""
    die_with_parent(parent_pid)
    torch.set_num_threads(1)
    for index, fold in share:
        try:
            name, metrics = train_one(index, fold, lambda *event: messages.put(("epoch", event)))
            messages.put(("done", index, name, metrics))
        except Exception as error:  # noqa: BLE001 — sent to the parent, which raises it
            if not isinstance(error, SerError):
                traceback.print_exc()  # a bug: its traceback goes to the terminal
            messages.put(("failed", index, isinstance(error, DivergedError),
                          str(error) if isinstance(error, SerError) else f"{type(error).__name__}: {error}"))


def train_folds_side_by_side(chosen: list[tuple[int, Fold]], train_one: TrainOne, jobs: int,
                             progress: ProgressCallback | None = None) -> dict[str, dict]:
    """{fold directory name: metrics} of `chosen` (index, fold) pairs, trained in `jobs` forked workers,
    in the order of `chosen`."""
    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    shares = [chosen[worker::jobs] for worker in range(jobs)]
    workers = [context.Process(target=_work, args=(share, train_one, messages, os.getpid()), daemon=True)
               for share in shares if share]
    results: dict[int, tuple[str, dict]] = {}
    failures: dict[int, tuple[bool, str]] = {}
    try:
        for worker in workers:
            worker.start()
        while len(results) + len(failures) < len(chosen):
            try:
                message = messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers) and messages.empty():
                    break  # a worker died without reporting its folds
                continue
            if message[0] == "epoch":
                if progress is not None:
                    progress(*message[1])
            elif message[0] == "done":
                results[message[1]] = (message[2], message[3])
            else:
                failures[message[1]] = (message[2], message[3])
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()  # only when this process is interrupted: the folds resume from checkpoints
            worker.join()
    for index, fold in chosen:
        if index in failures:
            diverged, message = failures[index]
            raise (DivergedError if diverged else TrainingError)(f"fold {fold.name}: {message}")
        if index not in results:
            raise TrainingError(f"the worker training fold {fold.name} died (killed, or out of memory?)",
                                "run the same command again: finished folds are kept, the others resume")
    return dict(results[index] for index, _ in chosen)
