"""`ser prepare` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def prepare() -> None:
    raise SerError("`ser prepare` is not built yet")
