"""Extraction by several processes (torchrun): who does which batches, and how they agree.

`ser extract` run under `torchrun --nproc-per-node N -m ser.cli extract …` joins a process group
(gloo on CPU; on GPU NCCL for the device and gloo for these small control messages). The leader
(rank 0) prepares `<out>.partial/`; every rank then plans the same batches, takes its
length-balanced share, and writes its own shard files (`shard-NNNNNN-rank<R>.h5`) into the
shared partial folder; once all ranks are done the leader merges every shard into the cache.

Because the shards of every rank live side by side and a rerun reads them all, a killed run
resumes with any number of processes (one included), and every utterance is computed in the
same batch as a single process would use, so the cache is the same bit for bit (on CPU, at the
same intra-op thread count: kernels round differently with more threads).
"""

from __future__ import annotations

import contextlib
import datetime
import heapq
import os
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from ser.errors import UserInputError
from ser.features.output_lock import exclusive_output

T = TypeVar("T")
# Ranks wait for one another at the end of the extraction; torchrun stops the others when one dies.
WAIT_HOURS = 24


def balanced_shares(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Indices of `costs` for each of `world_size` ranks, each share's total as even as greedy
    longest-first assignment makes it; every share keeps the original order."""
    shares: list[list[int]] = [[] for _ in range(world_size)]
    loads = [(0.0, rank) for rank in range(world_size)]  # a heap of (load, rank)
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return [sorted(share) for share in shares]


class SingleProcess:
    """One process does every batch and merges (the default; no process group)."""

    rank, world_size = 0, 1
    shard_suffix = ""  # shard files: shard-NNNNNN<suffix>.h5

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def share(self, costs: Sequence[float]) -> list[int]:
        """This rank's indices into the planned batches (whose costs are given)."""
        return balanced_shares(costs, self.world_size)[self.rank]

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order (a synchronisation point)."""
        return [value]

    def from_leader(self, compute: Callable[[], T]) -> T:
        """`compute()` on the leader, its result on every rank."""
        return compute()

    def leader_first(self, make: Callable[[], T]) -> T:
        """`make()` on the leader, then on the other ranks (they find what the leader set up)."""
        return make()

    def barrier(self) -> None:
        self.gather(None)

    def close(self) -> None:
        pass


class TorchrunGroup(SingleProcess):
    """The ranks of a torchrun launch (RANK, WORLD_SIZE, MASTER_ADDR/PORT from its environment)."""

    def __init__(self, backend: str):
        import torch.distributed as dist

        self.dist = dist
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=WAIT_HOURS))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.shard_suffix = f"-rank{self.rank}"

    def gather(self, value: T) -> list[T]:
        gathered: list[Any] = [None] * self.world_size
        self.dist.all_gather_object(gathered, value)  # on CPU through gloo, whatever the device
        return gathered

    def from_leader(self, compute: Callable[[], T]) -> T:
        message = [compute() if self.is_leader else None]
        self.dist.broadcast_object_list(message, src=0)
        return message[0]

    def leader_first(self, make: Callable[[], T]) -> T:
        if self.is_leader:
            made = make()
            self.barrier()
            return made
        self.barrier()
        return make()

    def close(self) -> None:
        self.dist.destroy_process_group()


def leader_holds_output(group: SingleProcess, out: str | os.PathLike) -> contextlib.AbstractContextManager:
    """The exclusive lock on `out` (output_lock.py), held by the leader for the whole launch; the
    other ranks write only inside the leader's `<out>.partial/` and take no lock of their own."""
    return exclusive_output(Path(out)) if group.is_leader else contextlib.nullcontext()


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun (or any env:// launcher) started with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_follower_rank() -> bool:
    """True in every torchrun rank but rank 0 (which reports for all)."""
    return launched_by_torchrun() and int(os.environ.get("RANK", "0")) != 0


def local_device(device: str) -> str:
    """The device of this rank: `cuda`/`auto` (with a GPU) become `cuda:<LOCAL_RANK>` under torchrun."""
    from ser.features.backbone import resolve_device

    if not launched_by_torchrun():
        return device
    resolved = resolve_device(device)
    if resolved == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return resolved


def join_extraction_group(device: str) -> SingleProcess:
    """The process group of a torchrun launch (gloo on CPU, NCCL + gloo on GPU), or SingleProcess."""
    if not launched_by_torchrun():
        return SingleProcess()
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise UserInputError(f"WORLD_SIZE is set but {', '.join(missing)} is not",
                             "launch with torchrun --nproc-per-node N -m ser.cli extract …")
    import torch

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        return TorchrunGroup("cpu:gloo,cuda:nccl")
    return TorchrunGroup("gloo")


def require_single_process(what: str) -> None:
    """Refuse `what` under torchrun, where every rank would do the same work."""
    if launched_by_torchrun():
        raise UserInputError(f"{what} runs in one process, not under torchrun", "run it without torchrun")
