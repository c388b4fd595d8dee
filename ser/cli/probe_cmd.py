"""`ser probe`: layer-wise linear probes from the cache's pooled statistics (a baseline in seconds)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import DevSplit, FoldScheme, KFolds, ManifestPath, OutPath, PerSpeaker, Workdir

HELP = "Probe every cached layer with logistic (or ridge) regression on pooled mean+std: a floor for any head."
EXAMPLES = """Examples:

  ser probe                                   (the only cache; every layer and all layers together)

  ser probe --model wavlm-base --layers 6-12

  ser probe --folds speaker --dev speaker

  ser probe --task dimensional                (ridge regression, scored by CCC)

  ser probe --per-speaker                     (statistics of features z-scored per speaker: the floor
                                               of `ser train --per-speaker`)

Each layer's per-utterance mean and std over time (stored by `ser extract`) feed standardise →
logistic regression; its C is chosen on each fold's dev split (the same folds and dev split as
`ser train`), the probe is refitted on train + dev with that C, and test is scored once. Writes probe.csv (layer × fold), probe_summary.csv and
probe.png to runs/<corpus>/<model>/probe-<protocol>/ (or --out). `ser report` shows the same
probe as the floor row of every ablation table."""


def probe(
    model: Annotated[Optional[str], typer.Option("--model", help="Cache model (default: the only cache).")] = None,
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    layers: Annotated[
        Optional[str], typer.Option("--layers", help="Layers to probe, e.g. 0,4,8-12 (default: every layer).")
    ] = None,
    folds: FoldScheme = None,
    k: KFolds = None,
    dev: DevSplit = "auto",
    task: Annotated[
        str, typer.Option("--task", help="categorical (logistic regression, UA) | dimensional (ridge, CCC).")
    ] = "categorical",
    per_speaker: PerSpeaker = False,
    out: OutPath = None,
) -> None:
    from ser.cli.train_cmd import parse_layers
    from ser.studies.probe_study import write_probe
    from ser.training.probe import ProbeProtocol

    if task not in ("categorical", "dimensional"):
        raise typer.BadParameter(f"{task!r} is not a task; choose categorical or dimensional", param_hint="--task")
    protocol = ProbeProtocol(task=task, folds=folds, k=k, dev=dev, per_speaker=per_speaker)
    outcome = write_probe(workdir, protocol, manifest=manifest, model=model,
                          layers=parse_layers(layers) if layers else None, out=out, progress=_progress)
    print_summary(outcome.summary, outcome.metric)
    print(f"probe: {outcome.out_dir / 'probe.csv'}")
    print(f"figure: {outcome.figure}")


def _progress(layer: str, done: int, total: int) -> None:
    """One overwritten status line on a terminal; silent otherwise."""
    if sys.stderr.isatty():
        print(f"\rprobing layer {layer} ({done}/{total})", end="" if done < total else "\n", file=sys.stderr)


def print_summary(summary, metric: str) -> None:
    """Test and dev score per layer (mean ± std over folds)."""
    from rich.console import Console
    from rich.table import Table

    from ser.training.statistics import mean_with_spread

    scale = 100 if metric == "ua" else 1
    table = Table(title=f"probe: test {metric} per layer (mean ± std over folds)", header_style="bold")
    for column in ("layer", f"test {metric}", f"dev {metric}", "folds"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for _, row in summary.iterrows():
        table.add_row(str(row["layer"]), mean_with_spread(scale * row[f"{metric}_mean"], scale * row[f"{metric}_std"], 2),
                      f"{scale * row[f'dev_{metric}_mean']:.2f}", str(row["n"]))
    Console(width=max(80, Console().width)).print(table)
