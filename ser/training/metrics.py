"""Evaluation metrics (reference §1): numpy arrays in, plain floats out.

UA = mean per-class recall (balanced accuracy), WA = overall accuracy, macro-F1 from
scikit-learn; CCC (concordance correlation coefficient) in numpy with population variances.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score


def ua(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted accuracy (UAR): the mean over the classes present in `y_true` of their recall.

    The label set is passed to scikit-learn explicitly, so a test fold that lacks a class the model
    predicts scores the same as balanced accuracy without warning about it."""
    present = np.unique(y_true)
    return float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def wa(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Weighted accuracy: correct / total."""
    return float(accuracy_score(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int] | None = None) -> float:
    """Macro-averaged F1 (over `labels` if given, else over the classes seen in either array)."""
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> list[list[int]]:
    """Confusion counts as nested lists: row = true class, column = predicted class."""
    return confusion_matrix(y_true, y_pred, labels=labels).tolist()


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
