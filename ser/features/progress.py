"""A rich progress bar for extraction: utterances, utterances per second and speed vs real time."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ExtractionProgress:
    """Context manager; `advance(utterances, audio_seconds)` after each batch. Writes to stderr."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.enabled = enabled
        self.started = time.perf_counter()
        self.utterances = 0
        self.audio_seconds = 0.0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.1f} utt/s"),
            TextColumn("{task.fields[speed]:.1f}× real time"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(label, total=total, rate=0.0, speed=0.0)

    def __enter__(self) -> "ExtractionProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def advance(self, utterances: int, audio_seconds: float) -> None:
        self.utterances += utterances
        self.audio_seconds += audio_seconds
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self._progress.update(
            self._task, advance=utterances, rate=self.utterances / elapsed, speed=self.audio_seconds / elapsed
        )
