"""What extraction consumes: one utterance of audio, independent of any manifest format."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UtteranceRecord:
    """An utterance: `path` is absolute; `start`/`end` (seconds) select a segment of the file."""

    id: str
    path: str
    start: float | None = None
    end: float | None = None
    text: str | None = None
