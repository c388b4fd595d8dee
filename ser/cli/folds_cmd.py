"""`ser folds`: show the evaluation protocol's folds, their sizes and test class counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import DevSplit, FoldScheme, KFolds, ManifestPath, Seed, Workdir

HELP = "Print the folds of a manifest's protocol: train/dev/test sizes and test class counts."
EXAMPLES = """Examples:

  ser folds                                  (the corpus's own protocol)

  ser folds --folds speaker --dev speaker

  ser folds --folds kfold --k 10 --seed 1     (speaker-dependent: for paper comparison only)

  ser folds --import EmoBox/data/iemocap      (EmoBox's published folds; lists what does not match)
  then: ser train --head shiftcnn --folds emobox:EmoBox/data/iemocap

Schemes: session (leave-one-session-out), speaker (leave-one-speaker-out; --k N for N speaker
groups), kfold (stratified random, speaker-dependent), split (the corpus's predefined split),
emobox:DIR (EmoBox's fold_<k>/*.jsonl files: DIR is EmoBox's data/<corpus> or data/ folder)."""
MISMATCHES_SHOWN = 10


def folds(
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    folds: FoldScheme = None,
    k: KFolds = None,
    seed: Seed = 0,
    dev: DevSplit = "auto",
    import_dir: Annotated[
        Optional[Path], typer.Option("--import", help="EmoBox folder (data/<corpus>): use its folds, list mismatches.")
    ] = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from ser.data.fold import dev_split_notes, unlearnable_class_notes
    from ser.data.folds import SPEAKER_DEPENDENT_SCHEMES, default_scheme, describe_folds, make_folds
    from ser.data.manifest import read_manifest
    from ser.data.workspace import Workspace

    path = Workspace(workdir).find_manifest(manifest)
    df = read_manifest(path)
    console = Console(width=max(100, Console().width))
    if import_dir is not None:
        from ser.data.emobox import emobox_folds

        if folds is not None or k is not None:
            raise typer.BadParameter("--import replaces --folds/--k", param_hint="--import")
        protocol = emobox_folds(df, import_dir.resolve(), seed=seed, dev=dev)
        scheme, fold_list = f"emobox:{protocol.source}", protocol.folds
        _print_mismatches(console, protocol)
    else:
        scheme, fold_list = folds or default_scheme(df), make_folds(df, scheme=folds, k=k, seed=seed, dev=dev)
    summary = describe_folds(df, fold_list)
    console.print(f"{path}: {len(summary)} folds, scheme {scheme}, dev {dev}, seed {seed}", soft_wrap=True)
    for note in dev_split_notes(fold_list) + unlearnable_class_notes(fold_list, df):
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if scheme in SPEAKER_DEPENDENT_SCHEMES:
        console.print("note: kfold is speaker-dependent (the same speakers train and test); use it only for comparison")
    table = Table(show_header=True, header_style="bold")
    for column in summary.columns:
        table.add_column(str(column), justify="left" if column == "fold" else "right")
    for row in summary.itertuples(index=False):
        table.add_row(*(str(value) for value in row))
    console.print(table)


def _print_mismatches(console, protocol) -> None:
    """EmoBox entries without a manifest row, and manifest rows no EmoBox fold tests."""
    for what, ids in (("EmoBox entries match no usable manifest row", protocol.unmatched),
                      ("usable manifest rows are in no EmoBox test fold", protocol.untested)):
        if ids:
            shown = ", ".join(ids[:MISMATCHES_SHOWN]) + (", …" if len(ids) > MISMATCHES_SHOWN else "")
            console.print(f"mismatch: {len(ids)} {what}: {shown}", markup=False, soft_wrap=True)
    if not protocol.unmatched and not protocol.untested:
        console.print("every EmoBox entry matches a manifest row, and every manifest row is tested once")
    console.print(f"train and sweep with: --folds emobox:{protocol.source}", soft_wrap=True)
