"""`ser distill` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def distill() -> None:
    raise SerError("`ser distill` is not built yet")
