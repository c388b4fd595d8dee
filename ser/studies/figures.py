"""The report's PNG figures, drawn with matplotlib's Agg backend (no display needed).

Every function takes plain numbers (numpy arrays, DataFrames) and a path, writes one PNG and
returns the path; none reads run directories itself.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ser.studies.results import proportion_value  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def confusion_figure(matrices: dict[str, np.ndarray], labels: list[str], title: str, path: Path) -> Path:
    """One row-normalised confusion matrix per fold plus their sum (counts annotated)."""
    panels = dict(matrices)
    panels["all folds"] = np.sum(list(matrices.values()), axis=0)
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for axis, (name, counts) in zip(axes[0], panels.items()):
        counts = np.asarray(counts, dtype=np.float64)  # (C, C): row = true, column = predicted
        recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        axis.imshow(recall, vmin=0, vmax=1, cmap="Blues")
        for (i, j), count in np.ndenumerate(counts):
            axis.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=8,
                      color="white" if recall[i, j] > 0.6 else "black")
        axis.set_xticks(range(len(labels)), labels, rotation=45, fontsize=8)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.set_xlabel("predicted")
        axis.set_title(name, fontsize=9)
    axes[0][0].set_ylabel("true")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def layer_weights_figure(weights: dict[str, np.ndarray], path: Path) -> Path:
    """Heat map: one row per configuration, one column per layer (mean softmaxed weight)."""
    names = list(weights)
    width = max(len(w) for w in weights.values())
    grid = np.full((len(names), width), np.nan)  # (configs, L)
    for row, name in enumerate(names):
        grid[row, : len(weights[name])] = weights[name]
    figure, axis = plt.subplots(figsize=(max(4.0, 0.45 * width + 3), 0.4 * len(names) + 1.6))
    image = axis.imshow(grid, aspect="auto", cmap="viridis")
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set_xticks(range(width))
    axis.set_xlabel("layer (0 = model input)")
    axis.set_title("learned layer weights (mean over folds and seeds)", fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.04)
    return _save(figure, path)


def proportion_figure(summary: pd.DataFrame, metric: str, path: Path) -> Path:
    """`metric` mean ± std against shift proportion: one panel per placement, one line per head."""
    placements = list(dict.fromkeys(summary["shift_placement"].astype(str)))
    figure, axes = plt.subplots(1, len(placements), figsize=(4.2 * len(placements), 3.4), squeeze=False, sharey=True)
    for axis, placement in zip(axes[0], placements):
        part = summary[summary["shift_placement"].astype(str) == placement]
        proportions = sorted(set(part["shift_proportion"].astype(str)), key=proportion_value, reverse=True)
        positions = {p: i for i, p in enumerate(proportions)}
        for head, rows in part.groupby("head", sort=False):
            rows = rows.assign(x=[positions[str(p)] for p in rows["shift_proportion"]]).sort_values("x")
            axis.errorbar(rows["x"], 100 * rows[f"{metric}_mean"], yerr=100 * rows[f"{metric}_std"],
                          marker="o", capsize=3, label=str(head))
        axis.set_xticks(range(len(proportions)), proportions)
        axis.set_xlabel("shift proportion (per direction)")
        axis.set_title(f"placement: {placement or '—'}", fontsize=10)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric.upper()} (%)")
    axes[0][-1].legend(fontsize=8)
    return _save(figure, path)


def curves_figure(histories: dict[str, list[pd.DataFrame]], path: Path) -> Path:
    """Training loss and dev UA per epoch: one line per configuration (mean over its runs)."""
    figure, (loss_axis, dev_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, runs in histories.items():
        joined = pd.concat(runs).groupby("epoch").mean(numeric_only=True)
        loss_axis.plot(joined.index, joined["train_loss"], label=name)
        if "dev_ua" in joined.columns:
            dev_axis.plot(joined.index, 100 * joined["dev_ua"], label=name)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    dev_axis.set_xlabel("epoch")
    dev_axis.set_ylabel("dev UA (%)")
    for axis in (loss_axis, dev_axis):
        axis.grid(alpha=0.3)
    if len(histories) <= 12:
        dev_axis.legend(fontsize=7)
    figure.suptitle("training curves (mean over folds and seeds)", fontsize=10)
    return _save(figure, path)
