"""`ser demo` (not built yet)."""

from ser.errors import SerError

HELP = "Not built yet."
EXAMPLES = ""


def demo() -> None:
    raise SerError("`ser demo` is not built yet")
