"""One share of a sweep split over independent jobs (`ser sweep … --shard I/N`, one per Slurm
array task); collect.py merges the shares' tables with `--collect`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, TypeVar

from ser.errors import UserInputError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """The `index`-th (1-based) of `count` disjoint shares of a sweep."""

    index: int
    count: int

    def take(self, items: Sequence[T]) -> list[T]:
        """Every `count`-th item, starting with item `index` (1-based): disjoint, together all."""
        return list(items[self.index - 1 :: self.count])

    @property
    def table_stem(self) -> str:
        return f"sweep-shard{self.index}of{self.count}"


def parse_shard(text: str) -> Shard:
    """`2/8` → Shard(2, 8); the form an array job writes: `$((SLURM_ARRAY_TASK_ID + 1))/N`."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UserInputError(f"--shard {text!r} is not of the form I/N", "e.g. --shard 1/4 … --shard 4/4")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise UserInputError(f"--shard {text}: I must be between 1 and N", "shares are numbered 1/N … N/N")
    return Shard(index, count)
