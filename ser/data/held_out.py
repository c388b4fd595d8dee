"""The dev split every fold draws: the rows scikit-learn's `train_test_split` holds out, without
importing scikit-learn.

`train_test_split(ids, test_size=fraction, random_state=seed, stratify=labels)` is what the
folds have always used; importing `sklearn.model_selection` costs a training process 1.3-2.6 s
(scipy.stats and sklearn.utils come with it) before it trains anything. These functions draw the
same rows from the same legacy `RandomState` stream: stratified, StratifiedShuffleSplit's
per-class counts (its `_approximate_mode`, ties broken at random) and per-class permutations;
unstratified, ShuffleSplit's one permutation. tests/data/test_held_out.py compares them with
scikit-learn's on many label sets.
"""

from __future__ import annotations

import math

import numpy as np


def _sizes(n_rows: int, fraction: float) -> tuple[int, int]:
    """(train, held-out) row counts of a `fraction` split, as train_test_split rounds them."""
    held = math.ceil(fraction * n_rows)
    if n_rows - held <= 0:
        raise ValueError(f"with {n_rows} rows and a held-out share of {fraction}, the training part is empty")
    return n_rows - held, held


def _approximate_mode(class_counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Rows to draw per class: proportional shares floored, the rest added by largest remainder
    (ties drawn at random) → (C,) int."""
    continuous = class_counts / class_counts.sum() * draws
    floored = np.floor(continuous)
    missing = int(draws - floored.sum())
    if missing > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            now = min(len(tied), missing)
            floored[rng.choice(tied, size=now, replace=False)] += 1
            missing -= now
            if missing == 0:
                break
    return floored.astype(int)


def held_out_rows(labels: np.ndarray | None, n_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) row indices of a `fraction` split of `n_rows` rows, stratified by `labels`
    (n_rows,) when given. ValueError when a class has one row or a part has fewer rows than classes."""
    n_train, n_held = _sizes(n_rows, fraction)
    rng = np.random.RandomState(seed)
    if labels is None:
        permutation = rng.permutation(n_rows)
        return permutation[n_held:], permutation[:n_held]
    classes, class_of_row, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    if class_counts.min() < 2:
        raise ValueError(f"the classes {classes[class_counts < 2].tolist()} have only 1 member, which is too few")
    if min(n_train, n_held) < len(classes):
        raise ValueError(f"a part of {min(n_train, n_held)} rows cannot hold all {len(classes)} classes")
    rows_of_class = np.split(np.argsort(class_of_row, kind="stable"), np.cumsum(class_counts)[:-1])
    train_counts = _approximate_mode(class_counts, n_train, rng)
    held_counts = _approximate_mode(class_counts - train_counts, n_held, rng)
    kept, held = [], []
    for rows, count, n_train_i, n_held_i in zip(rows_of_class, class_counts, train_counts, held_counts):
        shuffled = rows.take(rng.permutation(count), mode="clip")
        kept.extend(shuffled[:n_train_i])
        held.extend(shuffled[n_train_i:n_train_i + n_held_i])
    return np.array(kept, dtype=int), np.array(held, dtype=int)
