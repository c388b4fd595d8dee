"""The `--layers` syntax shared by extraction and training: `0,4,8-12`."""

from __future__ import annotations

from ser.errors import UserInputError


def read_layer_spec(text: str) -> list[int]:
    """`0,4,8-12` → [0, 4, 8, 9, 10, 11, 12], in the order written (repeats kept for the caller to judge)."""
    layers: list[int] = []
    try:
        for piece in (p.strip() for p in text.split(",") if p.strip()):
            first, _, last = piece.partition("-")
            layers.extend(range(int(first), int(last or first) + 1))
    except ValueError:
        raise UserInputError(f"cannot read --layers {text!r}", "write it like 0,4,8-12") from None
    return layers
