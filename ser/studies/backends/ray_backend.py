"""`ser sweep --backend ray`: one Ray task per run × fold, on a local Ray instance or a cluster.

The sweep loads the cache once in the driver and puts it into Ray's object store once: every node
that runs tasks holds one copy in its shared memory, and each task maps the features from there
without copying them (numpy buffers are zero-copy in Ray; torch views them). A task asks for
`threads` CPUs and `gpus_per_run` GPUs (fractions share one GPU; the features then stay in the
node's RAM and only batches move to the GPU). Tasks write their run directories like local
workers do, so `--out` must be on a filesystem every node sees; the driver gathers the results
into the same sweep.csv as the local backend, and a restart skips finished runs.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ser.errors import SerError, UserInputError
from ser.features.packed import PackedFeatures
from ser.studies.sweep_worker import ERROR_FILE, RunOutcome, RunTask, run_task
from ser.training import run_dir as files
from ser.training.training_data import TrainingData

RAY_HINT = "pip install 'ser[ray]' (or: pip install ray)"


@dataclass
class PortableData:
    """TrainingData for the object store: the packed features as numpy (zero-copy in Ray)."""

    data: TrainingData  # with packed=None and CPU targets
    ids: list[str] | None
    frames: np.ndarray | None  # (ΣT, L, D)
    offsets: np.ndarray | None  # (N+1,)

    @classmethod
    def of(cls, data: TrainingData) -> "PortableData":
        packed = data.packed
        light = dataclasses.replace(data, packed=None, targets=data.targets.cpu(), device=torch.device("cpu"),
                                    cache_path=Path(data.cache_path).resolve())  # workers start elsewhere
        if packed is None:  # streamed: every task reads the cache file itself
            return cls(light, None, None, None)
        return cls(light, packed.ids, packed.frames.cpu().numpy(), packed.offsets.cpu().numpy())

    def on(self, device: torch.device) -> TrainingData:
        """The TrainingData of a task on `device`, its features read in place from the object store."""
        scaler = self.data.speaker_scaler
        data = self.data if scaler is None else dataclasses.replace(self.data, speaker_scaler=scaler.to(device))
        if self.frames is None:
            return dataclasses.replace(data, device=device, targets=data.targets.to(device))
        with warnings.catch_warnings():  # the store's buffers are read-only; training only reads them
            warnings.simplefilter("ignore", UserWarning)
            frames = torch.from_numpy(self.frames)  # (ΣT, L, D)
        packed = PackedFeatures(self.ids, frames, torch.from_numpy(self.offsets.copy()))
        return dataclasses.replace(data, packed=packed, device=device, targets=data.targets.to(device))


def train_on_node(portable: PortableData, task: RunTask, threads: int, gpu: bool) -> RunOutcome:
    """The body of one Ray task: train one run × fold on the node's copy of the cache."""
    torch.set_num_threads(threads)
    device = torch.device("cuda" if gpu else "cpu")  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    return run_task(task, portable.on(device))


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserInputError("--backend ray needs Ray, which is not installed", RAY_HINT) from None
    return ray


def check_resources(totals: dict[str, float], threads: int, gpus_per_run: float) -> None:
    """Refuse runs the cluster could never place (Ray would wait for them forever)."""
    if gpus_per_run > totals.get("GPU", 0.0):
        raise UserInputError(f"--gpus-per-run {gpus_per_run} but the Ray cluster has {totals.get('GPU', 0.0):g} GPUs",
                             "use --gpus-per-run 0 for CPU runs, or join a cluster with GPUs (--address)")
    if threads > totals.get("CPU", 0.0):
        raise UserInputError(f"--threads {threads} but the Ray cluster has {totals.get('CPU', 0.0):g} CPUs",
                             "lower --threads")


def _lost(task: RunTask, error: BaseException) -> RunOutcome:
    """A task whose worker died (killed, out of memory): recorded as a failed run."""
    first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
    message = f"the Ray task running this run died: {first_line}"
    task.out_dir.mkdir(parents=True, exist_ok=True)
    (task.out_dir / ERROR_FILE).write_text(message + "\n")
    return RunOutcome(task.key, "failed", 0.0, error=message)


def run_on_ray(tasks: list[RunTask], data: TrainingData, finished: Callable[[RunOutcome], None], *,
               address: str | None = None, threads: int = 1, gpus_per_run: float = 0.0) -> None:
    """Train every task as a Ray task and call `finished` with each outcome as it arrives.

    `address`: an existing cluster (`auto`, `ray://host:10001`, …), or None to start Ray here
    (stopped again at the end); a Ray instance this process already started is used as it is.
    """
    ray = import_ray()
    if not tasks:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        check_resources(ray.cluster_resources(), threads, gpus_per_run)
        shared = ray.put(PortableData.of(data))  # once; each node fetches it once
        remote = ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=1)(train_on_node)
        # absolute run directories: Ray workers may start in another folder than this process
        tasks = [dataclasses.replace(task, out_dir=task.out_dir.resolve()) for task in tasks]
        pending = {remote.remote(shared, task, threads, gpus_per_run > 0): task for task in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as error:
                outcome = _lost(task, error)
            if outcome.status == "done" and not files.is_finished(task.out_dir):
                raise SerError(f"a Ray worker finished {task.key} but {task.out_dir} is not visible here",
                               "put --out (the sweep folder) on a filesystem that every node shares")
            finished(outcome)
    finally:
        if started_here:
            ray.shutdown()
