"""Spread and uncertainty of test results: the sample standard deviation over folds or seeds, and
95% bootstrap intervals over utterances pooled across folds (`scipy.stats.bootstrap`'s percentile
method, computed here with numpy: importing scipy.stats took half a second of every sweep, report
and all-fold run).

A fold-level std says how much folds differ; it does not say how precisely the pooled test set
pins a metric down. The bootstrap does: it resamples the pooled test utterances (every fold's test
part, so each utterance of the corpus once), recomputes the metric, and reports the percentile
interval. With several seeds of one configuration the utterances are resampled once per draw and
the metric averaged over the seeds, so an utterance is never counted as several samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
RESAMPLES = 2000  # percentile intervals; Monte Carlo error well under 0.1 point at thousands of utterances
METHOD = "percentile"
BATCH = 200  # resamples evaluated at once (memory: BATCH × utterances indices)
PREDICTIONS = "predictions.csv"


def sample_std(values: Iterable[float]) -> float:
    """Sample standard deviation (ddof=1) of the finite values; NaN for fewer than two."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    return float(array.std(ddof=1)) if len(array) > 1 else float("nan")


def mean_with_spread(mean: float, std: float, digits: int) -> str:
    """`65.43 ± 2.10`, or `65.43` where the std is NaN (one result has no spread, see sample_std)."""
    return f"{mean:.{digits}f}" + ("" if np.isnan(std) else f" ± {std:.{digits}f}")


def interval_settings() -> dict:
    """How the intervals were computed, for the files that hold them."""
    return {"confidence": CONFIDENCE, "resamples": RESAMPLES, "method": METHOD, "seed": 0,
            "unit": "test utterances pooled across folds (resampled with replacement)"}


def read_fold_predictions(fold_dirs: Iterable[Path]) -> list[pd.DataFrame] | None:
    """predictions.csv of every fold directory, in order; None when any fold lacks one."""
    tables = []
    for fold_dir in fold_dirs:
        path = Path(fold_dir) / PREDICTIONS
        if not path.is_file():
            return None
        tables.append(pd.read_csv(path, dtype={"id": str, "label": str, "prediction": str}, keep_default_na=False))
    return tables


def read_pooled_predictions(fold_dirs: Iterable[Path]) -> pd.DataFrame | None:
    """predictions.csv of every fold directory, concatenated; None when any fold lacks one."""
    tables = read_fold_predictions(fold_dirs)
    return pd.concat(tables, ignore_index=True) if tables else None


def class_probabilities(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(probabilities (N, C) from a predictions table's p_<label> columns, in their order; each row's
    class index (N,), −1 for a label without a column), or None without probability or label columns."""
    columns = [c for c in table.columns if c.startswith("p_")]
    if not columns or "label" not in table:
        return None
    index = {c[len("p_"):]: k for k, c in enumerate(columns)}
    labels = np.array([index.get(str(label), -1) for label in table["label"]], dtype=np.int64)
    return table[columns].to_numpy(np.float64), labels


def categorical_statistic(truth: np.ndarray, predicted: np.ndarray, classes: int):
    """statistic(index (..., N)) → (3, ...) UA, WA, macro-F1 averaged over the rows of `predicted`
    (S, N); the same definitions as training.metrics (UA over classes present, F1 over all)."""

    def statistic(index: np.ndarray, axis: int = -1) -> np.ndarray:
        t = truth[index]  # (..., N)
        values = []
        for row in predicted:
            p = row[index]  # (..., N)
            recalls, f1s = [], []
            for c in range(classes):
                is_c, said_c = t == c, p == c
                support, hits = is_c.sum(-1), (is_c & said_c).sum(-1)
                claimed = said_c.sum(-1)
                recalls.append(np.where(support > 0, hits / np.maximum(support, 1), np.nan))
                f1s.append(np.where(support + claimed > 0, 2 * hits / np.maximum(support + claimed, 1), 0.0))
            values.append(np.stack([np.nanmean(np.stack(recalls), axis=0), (t == p).mean(-1),
                                    np.mean(np.stack(f1s), axis=0)]))
        return np.mean(values, axis=0)

    return statistic


def ccc_statistic(truth: np.ndarray, predicted: np.ndarray):
    """statistic(index (..., N)) → (K, ...) CCC per dimension averaged over the rows of `predicted`
    (S, N, K) against `truth` (N, K); population variances as in training.metrics.ccc."""

    def statistic(index: np.ndarray, axis: int = -1) -> np.ndarray:
        t = truth[index]  # (..., N, K)
        values = []
        for row in predicted:
            p = row[index]  # (..., N, K)
            mt, mp = t.mean(-2, keepdims=True), p.mean(-2, keepdims=True)
            covariance = ((t - mt) * (p - mp)).mean(-2)
            spread = t.var(-2) + p.var(-2) + (mt - mp)[..., 0, :] ** 2
            values.append(np.where(spread > 0, 2 * covariance / np.where(spread > 0, spread, 1), 0.0))
        return np.moveaxis(np.mean(values, axis=0), -1, 0)  # (K, ...)

    return statistic


def _bootstrap(statistic, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point estimates, lows, highs) of a vectorised statistic over `count` resampled utterances:
    what scipy.stats.bootstrap(method="percentile") returns, the same index draws from
    default_rng(0), BATCH resamples at a time, and linear quantiles of their statistics."""
    point = np.asarray(statistic(np.arange(count)))
    rng = np.random.default_rng(0)
    draws = [statistic(rng.integers(0, count, (min(BATCH, RESAMPLES - start), count)))  # (..., batch)
             for start in range(0, RESAMPLES, BATCH)]
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(np.concatenate(draws, axis=-1), [alpha, 1 - alpha], axis=-1)
    return point, np.atleast_1d(low), np.atleast_1d(high)


def _aligned(replicates: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The replicates restricted to the utterances all of them scored, in one order."""
    common = set(replicates[0]["id"])
    for table in replicates[1:]:
        common &= set(table["id"])
    order = sorted(common)
    return [table.drop_duplicates("id").set_index("id").loc[order].reset_index() for table in replicates]


def pooled_intervals(replicates: list[pd.DataFrame]) -> dict[str, dict]:
    """{metric: {"pooled": value, "ci95": [low, high]}} over utterances pooled across folds.

    `replicates`: one pooled predictions table per seed of one configuration (predictions.csv rows:
    id, label, prediction for categorical runs; id, <dim>, pred_<dim> for dimensional ones).
    Categorical: UA, WA, macro-F1; dimensional: CCC per dimension and their mean. {} when empty.
    """
    replicates = [table for table in replicates if table is not None and len(table)]
    if not replicates:
        return {}
    replicates = _aligned(replicates)
    if not len(replicates[0]):
        return {}
    first = replicates[0]
    if "prediction" in first.columns:
        listed = [c[len("p_"):] for c in first.columns if c.startswith("p_")]  # every class of the task
        seen = {str(v) for table in replicates for v in (*table["label"], *table["prediction"])}
        classes = listed + sorted(seen - set(listed))
        code = {label: i for i, label in enumerate(classes)}
        truth = np.array([code[str(v)] for v in first["label"]])
        predicted = np.stack([[code[str(v)] for v in table["prediction"]] for table in replicates])  # (S, N)
        point, low, high = _bootstrap(categorical_statistic(truth, predicted, len(classes)), len(truth))
        names = ["ua", "wa", "macro_f1"]
    else:
        dimensions = [c[len("pred_"):] for c in first.columns if c.startswith("pred_") and c[len("pred_"):] in first.columns]
        if not dimensions:
            return {}
        truth = first[dimensions].to_numpy(np.float64)  # (N, K)
        predicted = np.stack([table[[f"pred_{d}" for d in dimensions]].to_numpy(np.float64) for table in replicates])

        def with_mean(index: np.ndarray, axis: int = -1, per_dimension=ccc_statistic(truth, predicted)) -> np.ndarray:
            values = per_dimension(index)  # (K, ...)
            return np.concatenate([values, values.mean(axis=0, keepdims=True)])

        point, low, high = _bootstrap(with_mean, len(truth))
        names = [f"ccc_{d}" for d in dimensions] + ["ccc_mean"]
    return {name: {"pooled": float(point[k]), "ci95": [float(low[k]), float(high[k])]} for k, name in enumerate(names)}
