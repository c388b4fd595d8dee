"""Sweep grids: option name → list of values, expanded into one configuration per combination.

A grid comes from repeated or comma-separated CLI options (`--head shiftcnn,shiftlstm
--seeds 0,1`) or from a YAML/TOML file whose keys are the same option names:

    head: [shiftcnn, shiftlstm, shiftformer]
    shift_proportion: ["1/2", "1/4", "1/8", "1/16"]
    shift_placement: [residual, inplace]
    seeds: [0, 1, 2]
    fold: all            # or [0, 1]
    epochs: 30           # a scalar is one value for every run
    head_options:        # anything else a head accepts
      dropout: [0.1, 0.2]

A file may instead list sub-grids whose union is swept (options beside `grids` are shared):

    seeds: [0, 1, 2]
    grids:
      - {head: [shiftcnn, shiftlstm], shift_placement: [residual, inplace]}
      - {head: [shiftformer], shift_placement: [replacement]}

Values given on the command line replace the file's values for that option.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ser.errors import UserInputError


def _to_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _proportion(text: str) -> str:
    """A shift proportion as written (1/8, 0.125 or 8), checked now rather than by every run."""
    from ser.heads import parse_proportion  # torch comes with the heads: only when a grid has this axis

    try:
        parse_proportion(text)
    except UserInputError as error:
        raise ValueError(error.message) from None
    return text


def _placement(text: str) -> str:
    from ser.heads import SHIFT_PLACEMENTS

    if text not in SHIFT_PLACEMENTS:
        raise ValueError(f"choose from {', '.join(SHIFT_PLACEMENTS)}")
    return text


def _stride(text: str) -> int:
    frames = int(text)
    if frames < 1:
        raise ValueError("a shift moves at least 1 frame")
    return frames


def _scalar(text: str) -> Any:
    """A head option value: int, float, bool or string, read the JSON way."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


# Every option a sweep may vary, with the converter for its values (one visible place).
AXIS_TYPES: dict[str, Callable[[str], Any]] = {
    "head": str,
    "shift_proportion": _proportion,
    "shift_placement": _placement,
    "shift_bidirectional": _to_bool,
    "shift_stride": _stride,
    "seed": int,
    "epochs": int,
    "lr": float,
    "batch_size": int,
    "weight_decay": float,
    "standardize": _to_bool,
}
ALIASES = {"seeds": "seed", "heads": "head", "proportion": "shift_proportion", "placement": "shift_placement"}
HEAD_OPTION_PREFIX = "head_option."


Axes = dict[str, tuple]  # option name -> its values, in order


@dataclass(frozen=True)
class Grid:
    """The union of one or more sub-grids (each a product of axes) and the folds to run."""

    parts: tuple[Axes, ...] = ()
    folds: tuple[str, ...] | None = None  # None = every fold of the protocol

    def points(self) -> list[dict[str, Any]]:
        """Every combination of each part's values (the last axis varying fastest), parts in order,
        repeated combinations dropped."""
        points: list[dict[str, Any]] = []
        for axes in self.parts:
            names = list(axes)
            for values in itertools.product(*(axes[name] for name in names)):
                point = dict(zip(names, values))
                if point not in points:
                    points.append(point)
        return points

    def values(self, name: str) -> list[Any]:
        """Every value that `name` takes anywhere in the grid (a head option's value may be a list)."""
        found: list[Any] = []
        for value in (value for axes in self.parts for value in axes.get(name, ())):
            if value not in found:
                found.append(value)
        return found

    def varied(self) -> list[str]:
        """Options that take more than one value (the columns an ablation table is about)."""
        names = dict.fromkeys(name for axes in self.parts for name in axes)
        return [name for name in names if len({repr(p.get(name)) for p in self.points()}) > 1]

    def to_dict(self) -> dict:
        return {"parts": [{k: list(v) for k, v in axes.items()} for axes in self.parts],
                "folds": None if self.folds is None else list(self.folds)}


def canonical_name(name: str) -> str:
    """`--seeds`/`seeds`/`shift-placement` → the axis name (`seed`, `shift_placement`)."""
    key = name.strip().replace("-", "_")
    key = ALIASES.get(key, key)
    if key.startswith(HEAD_OPTION_PREFIX) and len(key) > len(HEAD_OPTION_PREFIX):
        return key
    if key not in AXIS_TYPES:
        choices = ", ".join([*AXIS_TYPES, "head_options", "fold"])
        raise UserInputError(f"unknown sweep option {name!r}", f"choose from: {choices}")
    return key


def _split_values(text: str) -> list[str]:
    """`0.1,0.2` → ["0.1", "0.2"]; a comma inside brackets stays: `[0, 1],[2]` → ["[0, 1]", "[2]"]."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_values(name: str, texts: list[Any]) -> tuple:
    """Typed values of one axis from repeated and/or comma-separated texts, duplicates dropped."""
    convert = _scalar if name.startswith(HEAD_OPTION_PREFIX) else AXIS_TYPES[name]
    pieces: list[str] = []
    for text in texts:
        if isinstance(text, str):
            pieces.extend(part.strip() for part in _split_values(text) if part.strip())
        else:
            pieces.append(text if isinstance(text, str) else json.dumps(text) if isinstance(text, bool) else str(text))
    values: list[Any] = []
    for piece in pieces:
        try:
            value = convert(piece)
        except ValueError as error:
            raise UserInputError(f"bad value {piece!r} for sweep option {name}: {error}") from None
        if value not in values:
            values.append(value)
    if not values:
        raise UserInputError(f"sweep option {name} has no values")
    return tuple(values)


def parse_folds(texts: list[Any] | None) -> tuple[str, ...] | None:
    """`all` (or nothing) → None; otherwise the listed fold indices or names as strings."""
    if not texts:
        return None
    pieces = [p.strip() for t in texts for p in str(t).split(",") if p.strip()]
    if not pieces or "all" in pieces:
        if len(pieces) > 1:
            raise UserInputError("--fold all cannot be combined with single folds")
        return None
    return tuple(dict.fromkeys(pieces))


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _read_grid_text(path: Path) -> Any:
    if not path.is_file():
        raise UserInputError(f"grid file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise UserInputError(f"grid file {path} is neither .yaml/.yml nor .toml")
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
    except UnicodeDecodeError as error:
        raise UserInputError(f"grid file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
                             f"position {error.start})", "save it as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise UserInputError(f"cannot parse grid file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"cannot parse grid file {path}: {yaml_problem(error)}") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML parse error in one line, what is wrong and where (PyYAML's own text spans several,
    with a quote of the input)."""
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(error, 'problem', None) or error}{where}"


def _axes_of(mapping: Any, where: str) -> tuple[Axes, tuple[str, ...] | None]:
    """One sub-grid's axes (and its `fold` entry, if any) from a mapping of the file."""
    if not isinstance(mapping, dict):
        raise UserInputError(f"{where} must be a mapping of option names to values")
    axes: Axes = {}
    folds = None
    for key, value in mapping.items():
        if key == "fold":
            folds = parse_folds(_as_list(value))
        elif key == "head_options":
            if not isinstance(value, dict):
                raise UserInputError(f"{where}: head_options must map option names to values")
            for option, option_values in value.items():
                name = HEAD_OPTION_PREFIX + option
                axes[name] = parse_values(name, _as_list(option_values))
        else:
            name = canonical_name(key)
            axes[name] = parse_values(name, _as_list(value))
    return axes, folds


def load_grid_file(path: Path) -> Grid:
    """Read a YAML (.yaml/.yml) or TOML (.toml) grid file: one mapping of options, or a `grids`
    list of such mappings (their union) beside options shared by all of them."""
    data = _read_grid_text(path)
    if not isinstance(data, dict):
        raise UserInputError(f"grid file {path} must be a mapping of option names to values")
    shared = {key: value for key, value in data.items() if key != "grids"}
    common, folds = _axes_of(shared, str(path))
    if "grids" not in data:
        return Grid((common,), folds)
    parts = []
    for number, mapping in enumerate(_as_list(data["grids"])):
        axes, part_folds = _axes_of(mapping, f"{path}: grids[{number}]")
        if part_folds is not None:
            raise UserInputError(f"{path}: put `fold` at the top level, not inside grids[{number}]")
        parts.append({**common, **axes})
    if not parts:
        raise UserInputError(f"{path}: `grids` is empty")
    return Grid(tuple(parts), folds)


def parse_head_options(texts: list[str]) -> dict[str, tuple]:
    """`--head-option dropout=0.1,0.2` (repeatable) → {"head_option.dropout": (0.1, 0.2)}."""
    axes: dict[str, tuple] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"bad --head-option {text!r}", "write it as key=value or key=v1,v2")
        name = HEAD_OPTION_PREFIX + key.strip()
        axes[name] = parse_values(name, [values])
    return axes


def build_grid(
    file: Path | None, cli_axes: dict[str, list[str]], head_options: list[str], cli_folds: list[str] | None
) -> Grid:
    """The file's grid (if any) with the command line's options replacing the same options in
    every sub-grid."""
    base = load_grid_file(file) if file is not None else Grid(({},))
    overrides: Axes = {}
    for name, texts in cli_axes.items():
        if texts:
            key = canonical_name(name)
            overrides[key] = parse_values(key, texts)
    overrides.update(parse_head_options(head_options))
    parts = tuple({**axes, **overrides} for axes in base.parts)
    if any("head" not in axes for axes in parts):
        raise UserInputError("a sweep needs at least one head", "pass --head shiftcnn,shiftlstm or a grid file")
    folds = parse_folds(cli_folds) if cli_folds else base.folds
    return Grid(parts, folds)
