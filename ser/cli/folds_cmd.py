"""`ser folds`: show the evaluation protocol's folds, their sizes and test class counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ser.cli.options import FoldScheme, KFolds, ManifestPath, Seed, Workdir

HELP = "Print the folds of a manifest's protocol: train/dev/test sizes and test class counts."
EXAMPLES = """Examples:

  ser folds                                  (the corpus's own protocol)

  ser folds --folds speaker --dev speaker

  ser folds --folds kfold --k 10 --seed 1     (speaker-dependent: for paper comparison only)

Schemes: session (leave-one-session-out), speaker (leave-one-speaker-out; --k N for N speaker
groups), kfold (stratified random, speaker-dependent), split (the corpus's predefined split)."""


def folds(
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    folds: FoldScheme = None,
    k: KFolds = None,
    seed: Seed = 0,
    dev: Annotated[
        str, typer.Option("--dev", help="Dev split: random (20% of training utterances) | speaker.")
    ] = "random",
) -> None:
    from rich.console import Console
    from rich.table import Table

    from ser.data.folds import SPEAKER_DEPENDENT_SCHEMES, default_scheme, describe_folds, make_folds
    from ser.data.manifest import read_manifest
    from ser.data.workspace import Workspace

    path = Workspace(workdir).find_manifest(manifest)
    df = read_manifest(path)
    scheme = folds or default_scheme(df)
    summary = describe_folds(df, make_folds(df, scheme=folds, k=k, seed=seed, dev=dev))
    console = Console(width=max(100, Console().width))
    console.print(f"{path}: {len(summary)} folds, scheme {scheme}, dev {dev}, seed {seed}")
    if scheme in SPEAKER_DEPENDENT_SCHEMES:
        console.print("note: kfold is speaker-dependent (the same speakers train and test); use it only for comparison")
    table = Table(show_header=True, header_style="bold")
    for column in summary.columns:
        table.add_column(str(column), justify="left" if column == "fold" else "right")
    for row in summary.itertuples(index=False):
        table.add_row(*(str(value) for value in row))
    console.print(table)
