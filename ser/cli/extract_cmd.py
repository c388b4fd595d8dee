"""`ser extract` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def extract() -> None:
    raise SerError("`ser extract` is not built yet")
