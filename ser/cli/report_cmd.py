"""`ser report RUNS_DIR`: a Markdown ablation report with figures (png, pdf or svg)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import OutPath, Workdir

HELP = "Write report.md + figures/ (ablation tables, confusion matrices, layer weights, curves)."
EXAMPLES = """Examples:

  ser report runs/synthetic/fbank/sweep

  ser report runs/ --out reports/all-runs

  ser report --workdir demo-workdir      (every run of the workspace)

  ser report runs/ablation --format pdf  (vector figures for a paper)

RUNS_DIR is a sweep directory or any folder: every run directory below it (metrics.json or
error.txt) is included. Tables show test metrics at the dev-selected epoch as mean ± sample std
over folds and seeds with the count n, and 95% bootstrap intervals over the test utterances pooled
across folds; best-test-epoch numbers appear only in a labelled table."""

def _check_format(value: str) -> str:
    if value not in ("png", "pdf", "svg"):
        raise typer.BadParameter(f"{value!r} is not one of png, pdf, svg")
    return value


FigureFormat = Annotated[str, typer.Option("--format", help="Figure file format: png, pdf or svg.", callback=_check_format)]


def report(
    runs_dir: Annotated[
        Optional[Path], typer.Argument(help="Sweep directory or folder of run directories (default: <workdir>/runs).")
    ] = None,
    workdir: Workdir = Path("."),
    out: OutPath = None,
    figure_format: FigureFormat = "png",
) -> None:
    from ser.data.workspace import Workspace
    from ser.studies.report import write_report

    path = write_report(runs_dir if runs_dir is not None else Workspace(workdir).runs_dir, out, figure_format,
                        workdir)
    print(f"report: {path}")
    print(f"figures: {path.parent / 'figures'}")
