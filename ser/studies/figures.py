"""The report's figures, drawn with matplotlib's Agg backend (no display needed), fit for a paper:
every figure carries its own caption line, colour bars say what colours mean, and a name keeps
its colour in every panel.

Every function takes plain numbers (numpy arrays, DataFrames) and a path, writes one figure in
the format its suffix names (.png, .pdf or .svg) and returns the path; none reads run directories.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from ser.studies.results import proportion_value  # noqa: E402

FORMATS = ("png", "pdf", "svg")


def save_figure(figure: plt.Figure, path: Path, caption: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    if caption:
        figure.text(0.5, -0.02, caption, ha="center", va="top", fontsize=8, wrap=True)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(figure)
    return path


def name_colours(names) -> dict[str, str]:
    """One colour per name, fixed by first appearance, so a line keeps its colour in every panel."""
    return {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(map(str, names)))}


def confusion_figure(matrices: dict[str, np.ndarray], labels: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrices (colour and % = recall of the true class; below it the
    utterance count), one panel per fold plus their sum, with a colour bar and a caption line."""
    panels = dict(matrices)
    if len(panels) > 1:
        panels["all folds"] = np.sum(list(matrices.values()), axis=0)
    figure, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels) + 0.8, 3.6), squeeze=False,
                                layout="constrained")
    image = None
    for axis, (name, counts) in zip(axes[0], panels.items()):
        counts = np.asarray(counts, dtype=np.float64)  # (C, C): row = true, column = predicted
        recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        image = axis.imshow(recall, vmin=0, vmax=1, cmap="Blues")
        for (i, j), count in np.ndenumerate(counts):
            axis.text(j, i, f"{100 * recall[i, j]:.0f}%\n({int(count)})", ha="center", va="center", fontsize=7,
                      color="white" if recall[i, j] > 0.6 else "black")
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.set_xlabel("predicted class")
        axis.set_title(f"{name} (n={int(counts.sum())})", fontsize=9)
    axes[0][0].set_ylabel("true class")
    figure.colorbar(image, ax=list(axes[0]), fraction=0.03, pad=0.02, label="share of the true class")
    figure.suptitle(title, fontsize=10)
    caption = ("Test utterances at the dev-selected epoch, summed over seeds. Each row is normalised to 100% "
               "(diagonal = recall of that class); numbers in brackets are utterance counts.")
    return save_figure(figure, path, caption)


def layer_weights_figure(weights: dict[str, np.ndarray], path: Path) -> Path:
    """Heat map of learned layer weights relative to uniform (weight × L, so 1 = 1/L): one row per
    configuration, one column per layer, on a diverging scale whose neutral colour is uniform."""
    names = list(weights)
    width = max(len(w) for w in weights.values())
    relative = np.full((len(names), width), np.nan)  # (configs, L): weight / (1/L)
    for row, name in enumerate(names):
        relative[row, : len(weights[name])] = np.asarray(weights[name]) * len(weights[name])
    top = max(2.0, float(np.nanmax(relative)))
    label_inches = 0.065 * max(len(name) for name in names)  # configuration names at 8 pt, beside the rows
    figure, axis = plt.subplots(figsize=(max(4.5, 0.5 * width + 2.3 + label_inches), 0.45 * len(names) + 1.8))
    image = axis.imshow(relative, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=top))
    if width * len(names) <= 400:
        for (i, j), value in np.ndenumerate(relative):
            if np.isfinite(value):
                axis.text(j, i, f"{value / len(weights[names[i]]):.3f}", ha="center", va="center", fontsize=6,
                          color="white" if value > 0.85 * top or value < 0.3 else "black")
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set_xticks(range(width))
    axis.set_xlabel("layer (0 = model input)")
    axis.set_title("learned layer weights (mean over folds and seeds)", fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.04, label="weight × L (1 = uniform 1/L)")
    caption = ("Softmax layer weights; cells show the weight, colours its ratio to the uniform 1/L: white = "
               "uniform, red = above, blue = below.")
    return save_figure(figure, path, caption)


def proportion_figure(summary: pd.DataFrame, metric: str, path: Path) -> Path:
    """`metric` mean ± sample std against shift proportion: one panel per placement, one line per
    head in the same colour in every panel; heads without a shift as dashed lines across each panel."""
    has_proportion = summary["shift_proportion"].map(proportion_value) > 0
    unshifted, summary = summary[~has_proportion], summary[has_proportion]
    placements = list(dict.fromkeys(summary["shift_placement"].astype(str)))
    colours = name_colours([*summary["head"], *unshifted["head"]])
    figure, axes = plt.subplots(1, len(placements), figsize=(4.2 * len(placements), 3.4), squeeze=False, sharey=True)
    for axis, placement in zip(axes[0], placements):
        part = summary[summary["shift_placement"].astype(str) == placement]
        proportions = sorted(set(part["shift_proportion"].astype(str)), key=proportion_value, reverse=True)
        positions = {p: i for i, p in enumerate(proportions)}
        for head, rows in part.groupby("head", sort=False):
            rows = rows.assign(x=[positions[str(p)] for p in rows["shift_proportion"]]).sort_values("x")
            axis.errorbar(rows["x"], 100 * rows[f"{metric}_mean"], yerr=100 * rows[f"{metric}_std"].fillna(0),
                          marker="o", capsize=3, color=colours[str(head)], label=str(head))
        for _, row in unshifted.iterrows():  # heads without a shift: a reference line in every panel
            axis.axhline(100 * row[f"{metric}_mean"], color=colours[str(row["head"])], linestyle="--", linewidth=1)
        axis.set_xticks(range(len(proportions)), proportions)
        axis.set_xlabel("shift proportion (per direction)")
        axis.set_title(f"placement: {placement or '—'}", fontsize=10)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric.upper()} (%)")
    baselines = set(unshifted["head"].astype(str)) - set(summary["head"].astype(str))
    handles = [plt.Line2D([], [], color=colour, marker=None if head in baselines else "o",
                          linestyle="--" if head in baselines else "-",
                          label=f"{head} (no shift)" if head in baselines else head) for head, colour in colours.items()]
    axes[0][-1].legend(handles=handles, fontsize=8)
    caption = (f"Test {metric.upper()} at the dev-selected epoch: mean ± sample std over folds and seeds"
               + ("; dashed: heads without a shift." if len(unshifted) else "."))
    return save_figure(figure, path, caption)


def curves_figure(histories: dict[str, list[pd.DataFrame]], path: Path) -> Path:
    """Training loss and the dev selection metric per epoch: one line per configuration (mean over
    its runs), in the same colour in both panels."""
    colours = name_colours(histories)
    figure, (loss_axis, dev_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    dev_label = "dev UA (%)"
    for name, runs in histories.items():
        joined = pd.concat(runs).groupby("epoch").mean(numeric_only=True)
        loss_axis.plot(joined.index, joined["train_loss"], color=colours[name], label=name)
        if "dev_ua" in joined.columns:
            dev_axis.plot(joined.index, 100 * joined["dev_ua"], color=colours[name], label=name)
        elif "dev_ccc_mean" in joined.columns:
            dev_label = "dev CCC (mean of dimensions)"
            dev_axis.plot(joined.index, joined["dev_ccc_mean"], color=colours[name], label=name)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    dev_axis.set_xlabel("epoch")
    dev_axis.set_ylabel(dev_label)
    for axis in (loss_axis, dev_axis):
        axis.grid(alpha=0.3)
    if len(histories) <= 12:
        dev_axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    figure.suptitle("training curves (mean over folds and seeds)", fontsize=10)
    return save_figure(figure, path, "Lines share a colour per configuration in both panels.")


def reliability_figure(tables: dict[str, dict], name: str, path: Path) -> Path:
    """Reliability diagrams side by side (e.g. uncalibrated and calibrated): per bin of the top
    probability, the accuracy (bars) against the diagonal of perfect calibration, with bin counts."""
    figure, axes = plt.subplots(1, len(tables), figsize=(3.6 * len(tables), 3.6), squeeze=False, sharey=True)
    for axis, (title, table) in zip(axes[0], tables.items()):
        edges = table["edges"]
        width = np.diff(edges)
        used = table["count"] > 0
        axis.bar(edges[:-1][used], table["accuracy"][used], width=width[used], align="edge", color="C0",
                 edgecolor="white", label="accuracy")
        axis.bar(edges[:-1][used], (table["confidence"] - table["accuracy"])[used], bottom=table["accuracy"][used],
                 width=width[used], align="edge", color="C3", alpha=0.35, label="gap to confidence")
        axis.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
        total = table["count"].sum()
        gap = np.nansum(table["count"] * np.abs(table["accuracy"] - table["confidence"])) / max(total, 1)
        axis.set_title(f"{title}: ECE {gap:.3f} (n={int(total)})", fontsize=9)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("top probability (confidence)")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    figure.suptitle(f"reliability: {name}", fontsize=10)
    caption = ("Test utterances pooled over folds and seeds, 15 equal-width bins of the top probability; "
               "bars on the dashed diagonal are perfectly calibrated.")
    return save_figure(figure, path, caption)


def coverage_figure(curves: dict[str, dict[int, float]], path: Path) -> Path:
    """Accuracy of the most confident k% of test predictions against the coverage k: one line per configuration."""
    colours = name_colours(curves)
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for name, curve in curves.items():
        coverage = sorted(curve)
        axis.plot(coverage, [100 * curve[k] for k in coverage], marker="o", color=colours[name], label=name)
    axis.invert_xaxis()
    axis.set_xlabel("coverage (% of test utterances kept, most confident first)")
    axis.set_ylabel("accuracy (%)")
    axis.grid(alpha=0.3)
    if len(curves) <= 12:
        axis.legend(fontsize=7)
    return save_figure(figure, path, "Selective prediction with calibrated confidence: abstaining on the least "
                                     "confident utterances should raise the accuracy of the rest.")
