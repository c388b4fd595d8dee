"""Streamed batches: a cache too large for RAM read while the head trains.

A producer thread reads each batch ahead of the training loop and hands over ready batches
through a bounded queue (`depth` batches; the memory a stream holds is about `depth + 1`
padded float32 batches). A batch's utterances are read in the order they lie in the file, by
`workers` threads at a time, each one `pread` plus a vectorised Fletcher-32 check
(features/cache_chunks.py), with only the requested layers copied out; then they are padded by
the same gather as an in-memory batch (`PackedFeatures.batch`), so a streamed run computes
exactly what an in-memory run computes. The batches are the training loop's length-bucketed
ones, so padding stays as small in a streamed run as in memory.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ser.features.cache import CacheReader

STREAM_DEPTH = 2  # ready batches waiting for the loop
_END = object()


def stream_batches(cache_path: Path, ids: list[str], layers: list[int] | None, batch_rows: list[np.ndarray],
                   workers: int = 2, depth: int = STREAM_DEPTH, pin: bool = False
                   ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """(rows, x (B, L, T, D) float32 on the CPU, lengths (B,)) for each array of row positions into
    `ids`, in order, read by a producer thread `depth` batches ahead; an error in the producer is
    raised here. Leaving the loop early stops the producer."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with CacheReader(cache_path) as reader:
                for rows in batch_rows:
                    packed = reader.load_all(ids=[ids[row] for row in rows], layers=layers, threads=workers)
                    x, lengths = packed.batch(torch.arange(len(rows)))  # (B, L, T, D), (B,)
                    if pin:
                        x = x.pin_memory()
                    if not hand_over((rows, x, lengths)):
                        return
        except BaseException as error:  # handed to the loop, which raises it
            hand_over(error)
            return
        hand_over(_END)

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
