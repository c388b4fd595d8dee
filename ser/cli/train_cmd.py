"""`ser train` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def train() -> None:
    raise SerError("`ser train` is not built yet")
