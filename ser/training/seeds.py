"""The seeds a run may take: whole numbers that numpy's generators accept (0 … 2**32 − 1).
Light on purpose: the CLI checks `--seed` with it before torch is imported."""

from __future__ import annotations

from ser.errors import UserInputError

MAX_SEED = 2**32 - 1


def refuse_bad_seed(seed: int) -> None:
    """One line for a seed outside 0 … MAX_SEED (a grid's seeds reach training unchecked by the CLI)."""
    if not 0 <= seed <= MAX_SEED:
        raise UserInputError(f"seed {seed} is outside 0–{MAX_SEED}", "seeds are whole numbers from 0, e.g. 0,1,2")
