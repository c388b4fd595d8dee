"""`ser cache info PATH` (not built yet)."""

import typer

from ser.errors import SerError

HELP = "Inspect feature caches."
cache_app = typer.Typer(no_args_is_help=True)


@cache_app.command("info")
def info() -> None:
    raise SerError("`ser cache info` is not built yet")
