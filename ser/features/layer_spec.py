"""The `--layers` syntax shared by extraction and training: `0,4,8-12`."""

from __future__ import annotations

import re

from ser.errors import UserInputError

LAYER_OR_RANGE = re.compile(r"(\d+)\s*(?:-\s*(\d+))?")  # "4" or "8-12"


def read_layer_spec(text: str) -> list[int]:
    """`0,4,8-12` → [0, 4, 8, 9, 10, 11, 12], in the order written (repeats kept for the caller to
    judge); a spec that names no layer (`,,`) is refused."""
    layers: list[int] = []
    for piece in (p.strip() for p in text.split(",") if p.strip()):
        found = LAYER_OR_RANGE.fullmatch(piece)
        if found is None:  # a word, a negative number, or a range without an end ("8-")
            raise UserInputError(f"cannot read --layers {text!r} (at {piece!r})", "write it like 0,4,8-12")
        start, end = int(found.group(1)), int(found.group(2) or found.group(1))
        if end < start:
            raise UserInputError(f"--layers {text!r}: the range {piece!r} runs backwards", f"write it as {end}-{start}")
        layers.extend(range(start, end + 1))
    if not layers:
        raise UserInputError(f"--layers {text!r} names no layer",
                             "write it like 0,4,8-12, or leave it out for every layer")
    return layers
