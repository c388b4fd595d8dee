"""`ser cache info PATH`: what a feature cache holds, and whether any of it is damaged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ser.cli.help_text import reflowed

HELP = "Inspect feature caches (ser cache info PATH)."
EXAMPLES = "Examples:\n\n  ser cache info cache/synthetic/fbank.h5\n\n  ser cache info cache/synthetic/fbank.h5 --verify"
DAMAGE_SHOWN = 10
cache_app = typer.Typer(no_args_is_help=True)


@cache_app.command("info", help="Print a cache's attributes, utterance count, hours of audio and size, and any "
                                "damage (exit 2 when there is some).", epilog=reflowed(EXAMPLES))
def info(
    path: Annotated[Path, typer.Argument(help="A .h5 cache written by `ser extract`.")],
    verify: Annotated[bool, typer.Option("--verify", help="Also read every feature and pooled row, checking their "
                                         "checksums (as long as reading the whole file).")] = False,
) -> None:
    from ser.errors import CacheError
    from ser.features.cache import REDO_HINT, CacheReader

    with CacheReader(path) as reader:
        facts = reader.info()
        damage = reader.damage(verify=verify)
    table = Table(show_header=False, title=str(path))
    table.add_column("attribute", style="bold")
    table.add_column("value")
    for key, value in facts.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("damaged", str(len(damage)) if damage or verify else f"{len(damage)} (headers; --verify reads the data)")
    Console().print(table)
    if damage:
        for utt, reason in list(damage.items())[:DAMAGE_SHOWN]:
            print(f"damaged {utt}: {reason}")
        first = next(iter(damage.items()))
        raise CacheError(f"{path} is damaged: {len(damage)} utterance(s) cannot be read, e.g. {first[0]!r}: {first[1]}",
                         REDO_HINT)
