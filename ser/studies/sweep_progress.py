"""One live progress display for a whole sweep: runs done / running / failed and the ETA.

The bar advances by finished epochs (each run counts 1, split over its epochs), so the ETA is
meaningful long before the first run ends. Every finished or failed run also prints one line,
which is all that appears when stderr is not a terminal (logs, CI).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ser.studies.sweep_worker import EpochEvent, RunOutcome


class SweepProgress:
    """Context manager fed by the sweep loop: `started`, `epoch` and `finished` per run × fold."""

    def __init__(self, total: int, skipped: int, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.total, self.skipped = total, skipped
        self.done = self.failed = 0
        self.running: dict[str, float] = {}  # run key -> fraction of its epochs finished
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False, disable=not self.console.is_terminal,
        )
        self._task = self._progress.add_task(self._describe(), total=total)

    def __enter__(self) -> "SweepProgress":
        if self.skipped:
            self._line(f"sweep: {self.skipped} finished runs skipped (already in their run directories)")
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def _describe(self) -> str:
        return f"sweep: {self.done} done · {len(self.running)} running · {self.failed} failed"

    def _refresh(self) -> None:
        completed = self.done + self.failed + sum(self.running.values())
        self._progress.update(self._task, completed=completed, description=self._describe())

    def started(self, key: str) -> None:
        self.running[key] = 0.0
        self._refresh()

    def epoch(self, event: EpochEvent) -> None:
        key, epoch, total = event
        if key in self.running:
            self.running[key] = epoch / max(total, 1)
            self._refresh()

    def note(self, text: str) -> None:
        """One line about the sweep as a whole (e.g. how runs are batched)."""
        self._line(text)

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def finished(self, outcome: RunOutcome) -> None:
        self.running.pop(outcome.key, None)
        count = self.done + self.failed + 1
        if outcome.status == "done":
            self.done += 1
            test = (outcome.metrics or {}).get("test", {})
            scores = " ".join(f"{name}={test[name]:.3f}" for name in ("ua", "wa", "ccc_mean") if name in test)
            self._line(f"[{count}/{self.total}] done   {outcome.key}  {scores}  ({outcome.seconds:.1f} s)")
        else:
            self.failed += 1
            self._line(f"[{count}/{self.total}] FAILED {outcome.key}: {outcome.error}")
        self._refresh()
