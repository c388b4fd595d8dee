"""Evaluation metrics (reference §1): numpy arrays in, plain floats out.

UA = mean per-class recall (balanced accuracy), WA = overall accuracy, macro-F1 and confusion
counts, computed from per-class counts in numpy with scikit-learn's definitions (a test compares
them with scikit-learn; its functions cost about 20 ms per evaluation, every epoch of every run);
CCC (concordance correlation coefficient) in numpy with population variances.
"""

from __future__ import annotations

import numpy as np


def _indicators(y_true: np.ndarray, y_pred: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """(is_true, is_pred), each (L, N) bool: sample n has label l as its truth / its prediction."""
    column = np.asarray(labels)[:, None]  # (L, 1)
    return np.asarray(y_true)[None, :] == column, np.asarray(y_pred)[None, :] == column


def ua(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted accuracy (UAR): the mean over the classes present in `y_true` of their recall
    (a class the model predicts but the fold lacks does not count)."""
    is_true, is_pred = _indicators(y_true, y_pred, np.unique(y_true))
    return float(np.mean((is_true & is_pred).sum(axis=1) / is_true.sum(axis=1)))


def wa(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Weighted accuracy: correct / total."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int] | None = None) -> float:
    """Macro-averaged F1 (over `labels` if given, else over the classes seen in either array); a
    class with no true and no predicted sample scores 0."""
    labels = np.union1d(y_true, y_pred) if labels is None else labels
    is_true, is_pred = _indicators(y_true, y_pred, labels)
    true_positive = 2 * (is_true & is_pred).sum(axis=1)  # 2·TP
    denominator = is_true.sum(axis=1) + is_pred.sum(axis=1)  # 2·TP + FP + FN
    return float(np.mean(np.where(denominator > 0, true_positive / np.maximum(denominator, 1), 0.0)))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> list[list[int]]:
    """Confusion counts as nested lists: row = true class, column = predicted class."""
    is_true, is_pred = _indicators(y_true, y_pred, labels)
    return (is_true.astype(np.int64) @ is_pred.T.astype(np.int64)).tolist()  # (L, L)


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation coefficient 2·cov / (var x + var y + (mean x − mean y)²)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"ccc needs two 1-D arrays of the same non-zero length, got {x.shape} and {y.shape}")
    mean_x, mean_y = x.mean(), y.mean()
    covariance = np.mean((x - mean_x) * (y - mean_y))
    denominator = x.var() + y.var() + (mean_x - mean_y) ** 2
    if denominator == 0:
        return 1.0 if np.array_equal(x, y) else 0.0
    return float(2 * covariance / denominator)
