"""Files written through a temporary name and moved into place, so a crash never leaves half a
file (run directories, sweep tables, reports). No torch here: reports stay light to import."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def write_via_temporary(path: Path, write: Callable[[Path], object]) -> None:
    """Call write(temporary) beside `path`, then os.replace it onto `path`; a failed write leaves
    neither a half file nor the temporary behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: writers never collide
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_via_temporary(path, lambda temporary: temporary.write_text(text))


def write_json(path: Path, data: dict | list) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
