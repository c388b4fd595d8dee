"""Batch orders: length-bucketed and seeded for training, length-sorted for evaluation.

Bucketing keeps padding small (utterances of similar length share a batch) while staying
random: shuffle, cut into chunks of `chunk_batches` batches, sort each chunk by length, cut
it into batches, then shuffle the batches. The order depends only on (seed, epoch), so a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, chunk_batches: int = 16
) -> list[np.ndarray]:
    """Training batches of positions into `lengths` (every position exactly once)."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        members = order[start : start + chunk]
        members = members[np.argsort(lengths[members], kind="stable")]
        batches.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: positions sorted by length, longest first (order does not matter)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
