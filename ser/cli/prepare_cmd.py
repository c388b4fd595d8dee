"""`ser prepare CORPUS ROOT`: read a corpus's layout (or generate the synthetic one) into a manifest."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import OutPath, Workdir

HELP = "Write <workdir>/manifests/<corpus>.csv from a corpus folder (see `ser list corpora`)."
EXAMPLES = """Examples:

  ser prepare synthetic ./data/synthetic --jobs 2   (generates the built-in demo corpus in 2 processes)

  ser prepare iemocap /data/IEMOCAP_full_release --classes 4 --improvised-only

  ser prepare emodb /data/emodb --workdir ./work

  ser prepare csv /data/labels.csv --columns path=File,label=Emotion,speaker=Actor --name mine

  ser prepare folder ./my-recordings --name clinic   (→ manifests/clinic.csv; ROOT may be relative)

Files listed in a corpus's label table but unusable on disk (missing, a folder or device, empty,
truncated, not audio) are left out, counted and listed with the reason in <manifest>.missing.txt."""


def _check_name(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise typer.BadParameter(f"{value!r} is not a corpus name: use letters, digits, '.', '_' or '-'")
    return value


def prepare(
    corpus: Annotated[str, typer.Argument(help="Corpus recipe (see `ser list corpora`).")],
    root: Annotated[Path, typer.Argument(help="Corpus folder (synthetic: where to generate it; csv: the table).")],
    workdir: Workdir = Path("."),
    out: OutPath = None,
    name: Annotated[
        Optional[str],
        typer.Option("--name", help="Corpus name: manifests/<name>.csv and the corpus column (default: the "
                     "recipe's, e.g. folder or csv).", callback=_check_name),
    ] = None,
    classes: Annotated[
        Optional[str], typer.Option("--classes", help="Class set: 4 | 5 | all (iemocap, msp-*).")
    ] = None,
    improvised_only: Annotated[
        bool, typer.Option("--improvised-only", help="IEMOCAP: keep improvised dialogues only.")
    ] = False,
    columns: Annotated[
        Optional[str], typer.Option("--columns", help="csv: manifest=table column pairs, e.g. path=File,label=Emo.")
    ] = None,
    speakers: Annotated[Optional[int], typer.Option("--speakers", help="synthetic: number of speakers (8).")] = None,
    sessions: Annotated[Optional[int], typer.Option("--sessions", help="synthetic: number of sessions (4).")] = None,
    per_class: Annotated[
        Optional[int], typer.Option("--per-class", help="synthetic: clips per speaker and emotion (12).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="synthetic: generator seed (0).")] = None,
    rater_noise: Annotated[
        Optional[float],
        typer.Option("--rater-noise", help="synthetic: std of the V/A/D ratings around the latent values (0)."),
    ] = None,
    rated_share: Annotated[
        Optional[float],
        typer.Option("--rated-share", help="synthetic: fraction of utterances with V/A/D ratings; the rest are "
                     "unrated, for `ser distill` (1)."),
    ] = None,
    jobs: Annotated[
        Optional[int], typer.Option("--jobs", help="synthetic: worker processes generating the audio (1); the "
                                    "corpus is the same for any number.", min=1),
    ] = None,
) -> None:
    from rich.console import Console

    from ser.data.corpora import CORPORA, prepare_corpus
    from ser.data.corpora.generic import parse_column_map
    from ser.data.workspace import Workspace

    recipe = CORPORA.get(corpus)
    options = {
        "classes": classes,
        "improvised_only": improvised_only,
        "columns": parse_column_map(columns) if columns else None,
        "speakers": speakers,
        "sessions": sessions,
        "per_class": per_class,
        "seed": seed,
        "rater_noise": rater_noise,
        "rated_share": rated_share,
        "jobs": jobs,
    }
    result = prepare_corpus(recipe, root, out or Workspace(workdir).manifest_for(name or recipe.name), options, name)
    print_summary(result, Console())


def print_summary(result, console) -> None:
    """Counts per label, speakers, sessions and excluded files."""
    table = result.table
    console.print(f"wrote {result.manifest} ({len(table)} utterances, {table['duration'].sum() / 3600:.2f} h)")
    if "label" in table.columns:
        counts = table["label"].fillna("(none)").value_counts().sort_index()
        console.print("labels: " + ", ".join(f"{label} {count}" for label, count in counts.items()))
    for column in ("speaker", "session", "split"):
        if column in table.columns and table[column].notna().any():
            values = table[column].dropna()
            console.print(f"{column}s: {values.nunique()} ({', '.join(sorted(map(str, values.unique()))[:8])}"
                          f"{', …' if values.nunique() > 8 else ''})")
    if result.excluded:
        print(f"warning: {len(result.excluded)} labelled file(s) left out (missing, not audio, empty or truncated), "
              f"listed in {result.excluded_list}", file=sys.stderr)
        for excluded in result.excluded[:5]:
            print(f"  {excluded.id}: {excluded.reason}", file=sys.stderr)  # the reason names the file
    else:
        console.print("missing files: 0")
