"""`ser list models|heads|corpora`: what can be named on the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ser.errors import UserInputError

HELP = "List the registered models, heads or corpora."
EXAMPLES = "Examples:\n\n  ser list models\n\n  ser list heads\n\n  ser list corpora"


def _registry(what: str):
    if what == "models":
        from ser.features.backbones import BACKBONES

        return BACKBONES
    if what == "heads":
        from ser.heads import HEADS

        return HEADS
    if what == "corpora":
        from ser.data.corpora import CORPORA

        return CORPORA
    raise UserInputError(f"cannot list {what!r}", "choose one of: models, heads, corpora")


def list_names(what: Annotated[str, typer.Argument(help="models | heads | corpora")]) -> None:
    registry = _registry(what)
    table = Table(show_header=True, header_style="bold")
    table.add_column(what[:-1] if what != "corpora" else "corpus")
    table.add_column("description")
    for name in registry.names():
        table.add_row(name, registry.describe(name))
    Console().print(table)
