"""Stopping a sweep cleanly: SIGTERM/SIGINT stop the workers and exit; workers die with their parent.

- `stop_on_signals()` (main process): SIGTERM and SIGINT raise `SweepStopped`, so the sweep stops
  its worker processes instead of waiting for them to finish their runs. Finished runs are kept and
  interrupted ones resume from their checkpoints when the same command is run again.
- workers call `ser.training.worker_processes.die_with_parent()`, so no orphan keeps training.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from ser.errors import SerError


class SweepStopped(SerError):
    """The sweep was asked to stop (SIGTERM or SIGINT)."""

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        super().__init__(f"sweep stopped by {name}: its workers were stopped",
                         "run the same command again to resume: finished runs are kept")
        self.exit_code = 128 + signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise SweepStopped in the main thread (elsewhere, where
    Python allows no handlers, the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise SweepStopped(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def kill_processes(processes) -> None:
    """SIGKILL the given multiprocessing processes and reap them (their runs resume later)."""
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=10)
