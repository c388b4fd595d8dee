"""`ser report` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def report() -> None:
    raise SerError("`ser report` is not built yet")
