"""`ser sweep` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def sweep() -> None:
    raise SerError("`ser sweep` is not built yet")
