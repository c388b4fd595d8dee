"""Files written through a temporary name and moved into place, so a crash never leaves half a
file (run directories, sweep tables, reports). No torch here: reports stay light to import."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ser.errors import DamagedFileError, write_failure


def write_via_temporary(path: Path, write: Callable[[Path], object]) -> None:
    """Call write(temporary) beside `path`, then os.replace it onto `path`; a failed write leaves
    neither a half file nor the temporary behind."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: writers never collide
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno:  # disk full, read-only, a folder in the way, …
            raise write_failure(path, error) from None
        raise


def write_text(path: Path, text: str) -> None:
    write_via_temporary(path, lambda temporary: temporary.write_text(text))


def write_json(path: Path, data: dict | list) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_json_or_none(path: Path) -> dict | None:
    """A JSON object from `path`, or None when the file is missing, empty, truncated or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def damaged_file(path: Path, hint: str, cause: str = "empty, truncated or not a JSON object") -> DamagedFileError:
    """The one-line error for a run or model file that is there but cannot be read: it names the
    file, what is wrong with it and (`hint`) what to do. JSON, torch and safetensors files alike."""
    return DamagedFileError(f"{path} is damaged ({cause})", hint)


def read_json_file(path: Path, hint: str) -> dict:
    """A JSON object from a run or model file that the caller needs (config.json, metrics.json,
    features.json, an export's config.json), or `damaged_file`'s one line (`hint`: what to do)."""
    data = read_json_or_none(path)
    if data is None:
        if not Path(path).is_file():
            raise DamagedFileError(f"{path} is missing", hint)
        raise damaged_file(path, hint)
    return data


def read_first_line(path: Path) -> str | None:
    """The first line of a text file (an error.txt's reason), "" for an empty one, None when absent."""
    try:
        text = Path(path).read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None
    return next(iter(text.strip().splitlines()), "")
