"""`ser folds` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def folds() -> None:
    raise SerError("`ser folds` is not built yet")
