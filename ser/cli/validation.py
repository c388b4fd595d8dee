"""Option values checked at the edge (typer callbacks): a bad value is one usage line, exit 2,
before anything is loaded — never a silently odd run or a traceback later on."""

from __future__ import annotations

import math
import re
from pathlib import Path

import typer

from ser.training.seeds import MAX_SEED

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Head options that count something (blocks, channels, heads, frames): whole numbers ≥ 1.
# (`shift_blocks` and `layers` hold indices, which start at 0: not counts.)
COUNT_OPTION = re.compile(r"^(num_.*|.*_(size|ratio|heads|stride|distance|channels)|lstm_layers|n_div|channels)$")
FRACTION_OPTION = re.compile(r"^(.*_)?dropout$")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number") from None


def positive_seconds(value: float | None) -> float | None:
    """--max-seconds / --batch-seconds: unset, or a finite number of seconds above 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a number of seconds above 0, not {value}")
    return value


def memory_size(value: str | None) -> str | None:
    """--memory-budget: unset, or a size such as 2GiB, 500MB or a number of bytes."""
    from ser.errors import UserInputError
    from ser.features.memory_guard import parse_size

    try:
        return value if value is None else str(parse_size(value))
    except UserInputError as error:
        raise typer.BadParameter(f"{error.message}: {error.hint}") from None


def dev_split(value: str) -> str:
    """--dev: auto | speaker | random."""
    from ser.data.fold import DEV_MODES

    if value not in DEV_MODES:
        raise typer.BadParameter(f"{value!r} is not a dev split; choose {', '.join(DEV_MODES)}")
    return value


def precision(value: str) -> str:
    """--precision: one of PRECISIONS."""
    if value not in PRECISIONS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PRECISIONS)}")
    return value


def seed(value: int) -> int:
    """--seed: a whole number in 0 … 2**32 − 1."""
    if not 0 <= value <= MAX_SEED:
        raise typer.BadParameter(f"must be between 0 and {MAX_SEED}, not {value}")
    return value


def learning_rate(value: float | None) -> float | None:
    """--lr: unset, or a finite number above 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number above 0, not {value}")
    return value


def _bounds(text: str) -> list[str]:
    """A value, or both ends of a `low:high` range (`ser sweep --search optuna` samples those)."""
    return [part.strip() for part in text.split(":")] if ":" in text else [text]


def learning_rates(values: list[str] | None) -> list[str] | None:
    """`ser sweep --lr 1e-3,3e-4` (or a range, 1e-5:1e-2): every value a finite number above 0."""
    for text in (v for value in values or [] for v in value.split(",") if v.strip()):
        for bound in _bounds(text.strip()):
            learning_rate(_number(bound))
    return values


def seeds(values: list[str] | None) -> list[str] | None:
    """`ser sweep --seeds 0,1,2` (or a range, 0:9): every value a whole number in 0 … 2**32 − 1."""
    for text in (v.strip() for value in values or [] for v in value.split(",") if v.strip()):
        for bound in _bounds(text):
            if not re.fullmatch(r"-?\d+", bound):
                raise typer.BadParameter(f"{bound!r} is not a whole number")
            seed(int(bound))
    return values


def head_option_value(key: str, value) -> None:
    """Refuse values no head can use: counts below 1, fractions outside [0, 1), NaN or infinity."""
    where = f"--head-option {key}={value}"
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise typer.BadParameter(f"{item} is not a finite number", param_hint=where)
        if COUNT_OPTION.match(key) and isinstance(item, (int, float)) and (item < 1 or item != int(item)):
            raise typer.BadParameter(f"{key} counts something: it must be a whole number of at least 1",
                                     param_hint=where)
        if FRACTION_OPTION.match(key) and isinstance(item, (int, float)) and not 0 <= item < 1:
            raise typer.BadParameter(f"{key} must be in [0, 1)", param_hint=where)


def workspace_folder(path: Path) -> Path:
    """--workdir: a folder, or a path that does not exist yet (commands that write create it)."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a workspace folder")
    return path
