"""Streamed batches: a cache too large for RAM read while the head trains.

A producer thread builds each batch ahead of the training loop and hands over ready batches
through a bounded queue (`depth` batches; the memory a stream holds is about `depth + 2`
padded float32 batches). A batch's utterances are read in the order they lie in the file by
`workers` threads, each one `pread` plus a vectorised Fletcher-32 check
(features/cache_chunks.py), and each thread copies its utterance's requested layers straight
into the zero-padded (B, T, L, D) float32 batch, so a batch is read, checked, converted and
padded in parallel with no intermediate copy. A CPU batch is numpy's zeros (calloc's untouched
zero pages, which numpy asks the kernel to back with 2-MiB pages), not torch's, which writes
every 4-KiB page after the kernel has faulted it in and zeroed it: filling 300 utterances'
batches (one thread, warm page cache) ran at 2.7-2.9 GB/s against 0.3 GB/s. The result is the
tensor an in-memory batch is (`PackedFeatures.batch`: the same values, layout and strides), so a
streamed run computes exactly what an in-memory run computes. The batches are the training
loop's length-bucketed ones, so padding stays as small in a streamed run as in memory.

The reads go past the page cache (O_DIRECT where the file system allows it:
`CacheReader(path, page_cache=False)`). A streamed cache does not fit in RAM, so the page cache
cannot keep it from one epoch to the next, and going through it costs the kernel a copy of every
byte plus the page cache's upkeep: on benchmarks/scale.py's full-size cache (25 GB, 23 GB of
RAM, 2 shared cores) a pass over every utterance took 34.5-35.0 s of system CPU through the page
cache and 10.7-12.1 s past it (user 12-15 s either way), at 446-465 against 579-663 MB/s.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ser.features.cache import CacheReader
from ser.features.handoff import put_unless_stopped

STREAM_DEPTH = 2  # ready batches waiting for the loop
# Reader threads. A reader waiting on the disk takes no CPU (its reads skip the page cache), so
# a third keeps two cores checking and placing: a full-size pass on 2 shared cores ran at 937-938
# MB/s with 3 readers, 636-753 with 2 and 879-958 with 4, side by side.
STREAM_WORKERS = 3
_END = object()


def read_batch(reader: CacheReader, ids: list[str], layers: list[int] | None, pool: ThreadPoolExecutor,
               pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The padded batch of `ids` → (x (B, L, T, D) float32, lengths (B,)), as PackedFeatures.batch
    makes it; the utterances are read and placed by `pool`'s threads in file order."""
    lengths = torch.tensor([reader.lengths[utt] for utt in ids], dtype=torch.long)
    num_layers = reader.num_layers if layers is None else len(layers)
    shape = (len(ids), int(lengths.max()), num_layers, reader.dim)  # (B, T, L, D)
    x = torch.zeros(shape, pin_memory=True) if pin else torch.from_numpy(np.zeros(shape, np.float32))

    def place(i: int) -> None:
        block = torch.from_numpy(reader.block(ids[i], layers))  # (L, T, D) as stored
        x[i, : block.shape[1]] = block.permute(1, 0, 2)  # (T, L, D), converted to float32 in the copy

    list(pool.map(place, reader.file_order(ids)))
    return x.permute(0, 2, 1, 3), lengths  # (B, L, T, D), (B,)


def stream_batches(cache_path: Path, ids: list[str], layers: list[int] | None, batch_rows: list[np.ndarray],
                   workers: int = STREAM_WORKERS, depth: int = STREAM_DEPTH, pin: bool = False
                   ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """(rows, x (B, L, T, D) float32 on the CPU, lengths (B,)) for each array of row positions into
    `ids`, in order, built by a producer thread `depth` batches ahead; an error in the producer is
    raised here. Leaving the loop early stops the producer."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            with CacheReader(cache_path, page_cache=False) as reader, ThreadPoolExecutor(max(1, workers)) as pool:
                for rows in batch_rows:
                    x, lengths = read_batch(reader, [ids[row] for row in rows], layers, pool, pin)
                    if not put_unless_stopped(ready, (rows, x, lengths), stop):
                        return
        except BaseException as error:  # handed to the loop, which raises it
            put_unless_stopped(ready, error, stop)
            return
        put_unless_stopped(ready, _END, stop)

    producer = threading.Thread(target=produce, name="ser-stream", daemon=True)
    producer.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()
