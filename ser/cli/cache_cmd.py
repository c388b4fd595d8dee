"""`ser cache info PATH`: what a feature cache holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

HELP = "Inspect feature caches (ser cache info PATH)."
EXAMPLES = "Examples:\n\n  ser cache info cache/synthetic/fbank.h5"
cache_app = typer.Typer(no_args_is_help=True)


@cache_app.command("info", help="Print a cache's attributes, utterance count, hours of audio and size.", epilog=EXAMPLES)
def info(path: Annotated[Path, typer.Argument(help="A .h5 cache written by `ser extract`.")]) -> None:
    from ser.features.cache import CacheReader

    with CacheReader(path) as reader:
        facts = reader.info()
    table = Table(show_header=False, title=str(path))
    table.add_column("attribute", style="bold")
    table.add_column("value")
    for key, value in facts.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
