"""`ser probe`: layer-wise probes of one cache written as probe.csv (layer × fold × metric),
probe_summary.csv (mean ± std over folds per layer) and probe.png (score per layer with intervals).

A probe of every layer under a protocol is also kept beside the cache (training/probe.py), so
`ser report` finds it for its floor rows without recomputing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ser.data.atomic_files import write_text
from ser.data.workspace import Workspace
from ser.training.probe import ALL_LAYERS, ProbeProgress, ProbeProtocol, cached_probe, layer_summary, run_probe
from ser.training.statistics import mean_with_spread


@dataclass(frozen=True)
class ProbeOutcome:
    out_dir: Path
    table: pd.DataFrame  # probe.csv
    summary: pd.DataFrame  # probe_summary.csv
    figure: Path
    metric: str  # ua | ccc_mean


def probe_metric(table: pd.DataFrame) -> str:
    """The headline test metric of a probe table: UA (categorical) or mean CCC (dimensional)."""
    return "ua" if "ua" in table.columns else "ccc_mean"


def probe_figure(summary: pd.DataFrame, metric: str, title: str, path: Path) -> Path:
    """Test `metric` per layer: mean over folds with a ± std bar, the best layer annotated; the
    all-layer probe as a dashed line with its ± std band."""
    import matplotlib.pyplot as plt

    from ser.studies.figures import save_figure  # the report's PNG settings

    layers = summary[summary["layer"] != ALL_LAYERS]
    x = layers["layer"].astype(int).to_numpy()
    scale = 100 if metric in ("ua", "wa", "macro_f1") else 1
    mean, std = scale * layers[f"{metric}_mean"].to_numpy(), scale * layers[f"{metric}_std"].to_numpy()
    figure, axis = plt.subplots(figsize=(max(4.5, 0.45 * len(x) + 2.5), 3.6))
    axis.errorbar(x, mean, yerr=std, marker="o", capsize=3, label="one layer (mean ± std over folds)")
    best = int(np.argmax(mean))
    axis.annotate(f"{mean[best]:.1f}", (x[best], mean[best]), textcoords="offset points", xytext=(0, 8),
                  ha="center", fontsize=8)
    every = summary[summary["layer"] == ALL_LAYERS]
    if not every.empty:
        all_mean, all_std = scale * float(every[f"{metric}_mean"].iloc[0]), scale * float(every[f"{metric}_std"].iloc[0])
        axis.axhline(all_mean, color="tab:red", linestyle="--", label=f"all layers: {mean_with_spread(all_mean, all_std, 1)}")
        axis.axhspan(all_mean - all_std, all_mean + all_std, color="tab:red", alpha=0.12)
    axis.set_xticks(x)
    axis.set_xlabel("layer (0 = model input)")
    axis.set_ylabel(f"test {metric.upper()}" + (" (%)" if scale == 100 else ""))
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def write_probe(
    workdir: Path,
    protocol: ProbeProtocol = ProbeProtocol(),
    manifest: Path | None = None,
    model: str | None = None,
    layers: list[int] | None = None,
    out: Path | None = None,
    progress: ProbeProgress | None = None,
) -> ProbeOutcome:
    """Probe every (or the given) layer of the workspace's cache; write probe.csv, probe_summary.csv
    and probe.png into `out` (default runs/<corpus>/<model>/probe-<protocol>/)."""
    inputs = Workspace(Path(workdir)).training_inputs(manifest, model)
    if layers is None:  # every layer: shared with `ser report` through the copy beside the cache
        table = cached_probe(inputs.manifest, inputs.cache, protocol, progress)
    else:
        table = run_probe(inputs.manifest, inputs.cache, protocol, layers, progress)
    out_dir = Path(out) if out is not None else (
        Workspace(Path(workdir)).runs_root(inputs.corpus, inputs.model) / f"probe-{protocol.key()}")
    summary = layer_summary(table)
    metric = probe_metric(table)
    write_text(out_dir / "probe.csv", table.to_csv(index=False))
    write_text(out_dir / "probe_summary.csv", summary.to_csv(index=False))
    title = f"pooled mean+std probe — {inputs.corpus} / {inputs.model} ({summary['n'].iloc[0]} folds)"
    figure = probe_figure(summary, metric, title, out_dir / "probe.png")
    return ProbeOutcome(out_dir, table, summary, figure, metric)
