"""`ser report RUNS_DIR`: a Markdown ablation report with PNG figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import OutPath, Workdir

HELP = "Write report.md + figures/*.png (ablation tables, confusion matrices, layer weights, curves)."
EXAMPLES = """Examples:

  ser report runs/synthetic/fbank/sweep

  ser report runs/ --out reports/all-runs

  ser report --workdir demo-workdir      (every run of the workspace)

RUNS_DIR is a sweep directory or any folder: every run directory below it (metrics.json or
error.txt) is included. Tables show test metrics at the dev-selected epoch as mean ± std over
folds and seeds with the count n; best-test-epoch numbers appear only in a labelled table."""


def report(
    runs_dir: Annotated[
        Optional[Path], typer.Argument(help="Sweep directory or folder of run directories (default: <workdir>/runs).")
    ] = None,
    workdir: Workdir = Path("."),
    out: OutPath = None,
) -> None:
    from ser.data.workspace import Workspace
    from ser.studies.report import write_report

    path = write_report(runs_dir if runs_dir is not None else Workspace(workdir).runs_dir, out, workdir)
    print(f"report: {path}")
    print(f"figures: {path.parent / 'figures'}")
