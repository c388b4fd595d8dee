"""`ser predict --segments --plot DIR`: emotion over time, one PNG per input.

Categorical runs: the windows' class probabilities as stacked bands over the window centres
(they sum to 1 at every instant), with a strip above them coloured by the predicted label of
each window. Dimensional runs: arousal, valence and dominance as lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ser.inference.predict import UNCERTAIN

UNCERTAIN_COLOUR = "#bbbbbb"
DIMENSIONS = ("arousal", "valence", "dominance")


def plot_timelines(segments: pd.DataFrame, folder: Path) -> list[Path]:
    """One `<input name>.png` per input of `segments` (`PredictionResult.segments`) in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    for input_id, windows in segments.groupby("id", sort=False):
        name = _file_name(str(input_id), used)
        written.append(plot_timeline(windows.sort_values("start"), folder / f"{name}.png", str(input_id)))
    return written


def _file_name(input_id: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(input_id).stem) or "input"
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


def plot_timeline(windows: pd.DataFrame, path: Path, title: str) -> Path:
    """One input's windows (start, end, prediction, p_<label> or A/V/D) → a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = ((windows["start"] + windows["end"]) / 2).to_numpy(float)
    duration = float(windows["end"].max())
    columns = [c for c in windows.columns if c.startswith("p_")]
    if not columns:  # dimensional: A/V/D as lines
        figure, axis = plt.subplots(figsize=(10, 3.2), layout="constrained")
        for name in (d for d in DIMENSIONS if d in windows):
            axis.plot(centres, windows[name].to_numpy(float), marker="o", markersize=3, label=name)
        axis.set_xlim(0, duration)
        axis.set_xlabel("time (s)")
        axis.legend(loc="upper right", fontsize=8, ncol=3)
        axis.set_title(title, fontsize=10, loc="left")
        return _save(figure, path)
    labels = [c[2:] for c in columns]
    colours = {label: f"C{k % 10}" for k, label in enumerate(labels)}
    figure, (strip, axis) = plt.subplots(2, 1, figsize=(10, 3.8), sharex=True, layout="constrained",
                                         gridspec_kw={"height_ratios": [1, 6]})
    values = windows[columns].to_numpy(float).T  # (C, windows)
    # the bands span the whole input: the first and last windows' values held out to its edges
    times = np.concatenate([[0.0], centres, [duration]])
    values = np.concatenate([values[:, :1], values, values[:, -1:]], axis=1)  # (C, windows + 2)
    axis.stackplot(times, values, labels=labels, colors=[colours[label] for label in labels], alpha=0.85)
    axis.set_ylim(0, 1)
    axis.set_xlim(0, duration)
    axis.set_ylabel("probability")
    axis.set_xlabel("time (s)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    # the predicted label strip: each window owns the time from midway to the previous centre to
    # midway to the next; runs of one label are named when wide enough to read
    edges = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [duration]])
    predicted = windows["prediction"].astype(str).tolist()
    start = 0
    for k in range(1, len(predicted) + 1):
        if k < len(predicted) and predicted[k] == predicted[start]:
            continue
        left, right, label = edges[start], edges[k], predicted[start]
        strip.axvspan(left, right, color=colours.get(label, UNCERTAIN_COLOUR), lw=0)
        if right - left > duration / 16:
            strip.text((left + right) / 2, 0.5, label, ha="center", va="center", fontsize=8, color="white",
                       fontweight="bold")
        start = k
    strip.set_yticks([])
    strip.set_title(f"{title}: predicted label (top) and class probabilities over time "
                    f"({len(windows)} windows)", fontsize=10, loc="left")
    if UNCERTAIN in set(windows["prediction"].astype(str)):
        strip.text(1.01, 0.5, f"grey: {UNCERTAIN}", transform=strip.transAxes, fontsize=7, va="center")
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
