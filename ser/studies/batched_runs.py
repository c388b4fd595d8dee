"""The sweep's batched path: runs of one head family that share a graph train as one stacked model.

`plan_batches` sorts a sweep's runs × folds into groups that stack (same head family and sizes,
same optimiser settings; seeds, folds, shift proportion, placement, direction, learning rate,
epochs and batch size may differ) and the rest, which train one by one as before. Each group is
cut into chunks: no more members than memory allows (`members_that_fit`, printed at start), and
on CPU at least one chunk per worker process, because two one-thread processes use two cores
better than one two-thread process. `run_chunk` trains a chunk with `train_group` — in this
process (`run_chunks`) or in a sweep worker (`run_chunk_in_worker`) — and reports every member
like a solo run: a member that fails or diverges writes `error.txt` in its run directory (and is
counted as failed or diverged), its tracker (`--log`) records its epochs, and the others go on.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable

import torch

from ser.errors import OutputBusyError, SerError
from ser.heads import create_head
from ser.heads.stacked import activation_floats_per_frame, stack_key
from ser.studies.stopping import SweepStopped
from ser.studies.sweep_progress import SweepProgress
from ser.studies.sweep_worker import ERROR_FILE, EpochEvent, RunOutcome, RunTask, WorkerState, record_failure
from ser.training import run_dir as files
from ser.training.allocator import PhaseMemory
from ser.training.batched_loop import MemberResult, MemberSpec, train_group
from ser.training.cache_access import available_ram_bytes
from ser.training.config import TrainConfig
from ser.training.feature_defaults import head_options, is_frontend_cache
from ser.training.threads import use_threads
from ser.training.tracking import Tracker, open_tracker
from ser.training.training_data import TrainingData

MEMORY_SHARE = 0.5  # of the free RAM (or GPU memory) one stacked model may plan to use
BYTES = 4  # float32


@dataclass
class BatchPlan:
    chunks: list[list[RunTask]]  # each trains as one stacked model
    solo: list[RunTask]  # trained one by one (the sweep's usual path)
    notes: list[str]


def _group_key(config: TrainConfig, data: TrainingData) -> tuple | None:
    """Stacked-model key of a run (None: its head does not stack or cannot be built, or it refits or
    warps frequencies)."""
    if config.trains_solo:
        return None
    try:
        head = create_head(config.head, data.dim, data.num_layers, data.task.num_outputs,
                           **head_options(config, is_frontend_cache(data.cache_path)))
    except SerError:
        return None  # the solo path records the error in the run's directory
    key = stack_key(head)
    recipe = config.recipe
    return None if key is None else (key, recipe.optimizer, recipe.betas, recipe.weight_decay, recipe.grad_clip)


def member_bytes(config: TrainConfig, data: TrainingData) -> int:
    """Memory one member of a stacked model needs for a training step at the longest batch: its
    input (kept for the layer-sum gradient) and the activations autograd keeps."""
    options = head_options(config, is_frontend_cache(data.cache_path))
    head = create_head(config.head, data.dim, data.num_layers, data.task.num_outputs, **options)
    frames = int(data.lengths.max()) if len(data.lengths) else 1
    per_frame = activation_floats_per_frame(head, data.num_layers, data.dim, frames)
    parameters = sum(p.numel() for p in head.parameters())
    return BYTES * (config.recipe.batch_size * frames * per_frame + 6 * parameters)


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_ram_bytes()


def members_that_fit(group: list[RunTask], data: TrainingData, concurrent: int = 1) -> int:
    """K: how many members of `group` one stacked model holds when `concurrent` stacked models
    share MEMORY_SHARE of the free memory."""
    largest = max(member_bytes(task.config, data) for task in group)
    return max(1, min(len(group), int(MEMORY_SHARE * free_bytes(data.device)) // (concurrent * largest)))


def split_evenly(group: list[RunTask], parts: int) -> list[list[RunTask]]:
    """`group` cut into `parts` chunks whose sizes differ by at most one."""
    size, extra = divmod(len(group), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [group[a:b] for a, b in zip(bounds, bounds[1:])]


def plan_batches(tasks: list[RunTask], data: TrainingData, workers: int = 1) -> BatchPlan:
    """Which runs train stacked (groups of ≥ 2 that share a graph, cut into chunks that fit in
    memory and keep `workers` processes busy) and which one by one."""
    if data.streamed:
        return BatchPlan([], list(tasks), ["batched runs need the cache in memory: runs train one by one"])
    by_key: dict[tuple, list[RunTask]] = {}
    solo = []
    for task in tasks:
        key = _group_key(task.config, data)
        if key is None:
            solo.append(task)
        else:
            by_key.setdefault(key, []).append(task)
    chunks, notes = [], []
    for group in by_key.values():
        if len(group) == 1:
            solo += group
            continue
        fit = members_that_fit(group, data, workers)
        parts = max(-(-len(group) // fit), min(workers, len(group) // 2))
        # members of one fold and seed draw the same batches: in one chunk they share the input and its layer sum
        group_chunks = split_evenly(sorted(group, key=lambda task: (task.fold.name, task.config.seed)), parts)
        chunks += group_chunks
        sizes = sorted({len(chunk) for chunk in group_chunks}, reverse=True)
        notes.append(f"batched runs: {len(group)} {'/'.join(sorted({t.config.head for t in group}))} runs × folds as "
                     f"{len(group_chunks)} stacked model(s) of K = {'/'.join(map(str, sizes))} members "
                     f"(at most {fit} fit in memory)")
    if solo and chunks:
        heads = ", ".join(sorted({task.config.head for task in solo}))
        notes.append(f"{len(solo)} runs train one by one ({heads}: no stacked implementation or nothing to stack with)")
    return BatchPlan(chunks, solo, notes)


def _train_chunk(chunk: list[RunTask], data: TrainingData, trackers: list[Tracker],
                 on_epoch: Callable[[EpochEvent], None] | None) -> list[MemberResult]:
    def progress(index: int, epoch: int, total: int, row: dict) -> None:
        trackers[index].log_epoch(epoch, row)
        if on_epoch is not None:
            on_epoch((chunk[index].key, epoch, total))

    try:
        return train_group([MemberSpec(task.config, task.fold, task.out_dir) for task in chunk], data, progress)
    except SweepStopped:
        raise
    except Exception as error:  # noqa: BLE001 — a failed stacked model fails its members, not the sweep
        return [MemberResult(error=error) for _ in chunk]


def _open_trackers(chunk: list[RunTask]) -> list[Tracker]:
    """Each member's tracker (`--log`), as a solo run opens it."""
    return [open_tracker(task.log, task.out_dir, task.key, f"ser/{task.config.corpus}/{task.config.model}",
                         {**task.config.to_dict(), "fold": task.fold.name}) for task in chunk]


def run_chunk(chunk: list[RunTask], data: TrainingData,
              on_epoch: Callable[[EpochEvent], None] | None = None) -> list[RunOutcome]:
    """Train `chunk` as one stacked model; each member is reported like a solo run (a member that
    fails or diverges writes `error.txt` in its run directory). Each member's fold lock is taken
    first and held until its files are written: a member that another process is training fails
    at once and the others train without it."""
    began = time.perf_counter()
    with ExitStack() as held:
        outcomes, ours = {}, []
        for task in chunk:
            try:
                held.enter_context(files.hold_fold(task.out_dir))
            except OutputBusyError as error:
                outcomes[task.key] = record_failure(task, error, 0.0)
                continue
            (task.out_dir / ERROR_FILE).unlink(missing_ok=True)
            ours.append(task)
        if ours:
            outcomes.update((outcome.key, outcome) for outcome in _run_members(ours, data, on_epoch, began))
        return [outcomes[task.key] for task in chunk]


def _run_members(chunk: list[RunTask], data: TrainingData, on_epoch: Callable[[EpochEvent], None] | None,
                 began: float) -> list[RunOutcome]:
    """`run_chunk` once the members' folds are held: train them as one stacked model, record each."""
    trackers = _open_trackers(chunk)
    failed = [True] * len(chunk)  # until its results are recorded (a stopped sweep: all)
    outcomes = []
    try:
        with PhaseMemory() as memory:  # the heap's free pages go back to the system after each group
            results = _train_chunk(chunk, data, trackers, on_epoch)
        seconds = (time.perf_counter() - began) / len(chunk)
        for index, (task, result) in enumerate(zip(chunk, results)):
            if result.error is None:
                files.write_memory(task.out_dir, memory.figures, shared_by=len(chunk))
                trackers[index].log_final(result.metrics)
                failed[index] = False
                outcomes.append(RunOutcome(task.key, "done", seconds, metrics=result.metrics))
                continue
            outcomes.append(record_failure(task, result.error, seconds))
    finally:
        for tracker, bad in zip(trackers, failed):
            tracker.close(failed=bad)
    return outcomes


def run_chunks(chunks: list[list[RunTask]], data: TrainingData, threads: int | None, progress: SweepProgress,
               finished: Callable[[RunOutcome], None]) -> None:
    """Train `chunks` one after another in this process with `threads` intra-op threads (None:
    every CPU it may use)."""
    if not chunks:
        return
    previous = torch.get_num_threads()
    use_threads(threads)
    try:
        for chunk in chunks:
            for task in chunk:
                progress.started(task.key)
            for outcome in run_chunk(chunk, data, progress.epoch):
                finished(outcome)
    finally:
        torch.set_num_threads(previous)


def run_chunk_in_worker(chunk: list[RunTask]) -> list[RunOutcome]:
    """Entry point of a stacked chunk inside a sweep's pool worker (sweep_worker.init_worker)."""
    events = WorkerState.events
    return run_chunk(chunk, WorkerState.data, events.put if events is not None else None)
