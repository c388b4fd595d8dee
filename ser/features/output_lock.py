"""One writer per output: an exclusive lock held for a whole extraction, export or fold of a run
(training, fine-tuning, distillation, sweeps).

    with exclusive_output(cache_path):
        ...  # only this process writes cache_path, its .partial/ folder and its temporaries

The lock is `fcntl.flock` on `<out>.lock`, which holds the holder's pid. A second process asking
for the same output fails at once with an `OutputBusyError` that names that pid, read from the file
it tried to lock (waiting at most half a second for it when the holder has only just locked); the
kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a stale file
never blocks a rerun. An output that every process would compute alike (a distillation
teacher's cross-fitted predictions, a fine-tuning conv cache) is locked with `wait=True`: the
second process says whom it waits for, waits, then finds the output made. The file is removed on
release; a process that locked a file another one had just removed notices (different inode) and
tries again, so two processes never both hold "the" lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ser.errors import OutputBusyError, write_failure


def lock_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".lock")


def holder_of(descriptor: int, patience: float = 0.5) -> str:
    """Who holds the lock file open at `descriptor`: the pid its holder writes just after
    locking, waited for up to `patience` seconds (a holder that has only just locked has not
    written it yet). It reads the file this process tried to lock, not the path, so a holder that
    finishes and removes the file in the meantime is still named."""
    deadline = time.monotonic() + patience
    while True:
        pid = _written_pid(os.pread(descriptor, 64, 0).decode(errors="replace"))
        if pid is not None:
            return f"process {pid}"
        if time.monotonic() >= deadline:
            return "another process"
        time.sleep(0.01)


def writer_of(out: str | os.PathLike) -> str | None:
    """"process N" when `out`'s lock file names a live process (it is being written now), else None.
    Reads the file without locking it, so asking never gets in the writer's way."""
    try:
        pid = _written_pid(lock_path(Path(out)).read_text(errors="replace"))
    except OSError:
        return None
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # its holder died; the kernel has dropped the lock
        return None
    except PermissionError:  # alive, owned by another user
        pass
    return f"process {pid}"


def _written_pid(text: str) -> int | None:
    """The pid a holder wrote into its lock file, once the whole line is there."""
    return int(text) if text.endswith("\n") and text.strip().isdigit() else None


def _acquire(path: Path, wait: bool) -> int:
    """Open and lock `path`; returns the descriptor. If it is held: raises OutputBusyError, or with
    `wait` says on stderr whom it waits for and blocks until the lock is free."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            held = error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
            holder = holder_of(descriptor) if held else ""
            if held and wait:
                print(f"note: waiting for {holder}, which is writing {path.with_suffix('')}", file=sys.stderr)
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            else:
                os.close(descriptor)
                if held:
                    raise OutputBusyError(
                        f"{path.with_suffix('')} is being written by {holder} (lock {path})",
                        "wait for that run to finish, or stop it; use --out to write elsewhere",
                    ) from None
                raise
        try:
            same_file = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # the previous holder removed it between our open and flock
            same_file = False
        if same_file:
            return descriptor
        os.close(descriptor)


_HELD: dict[Path, int] = {}  # lock files this process holds → nesting depth


@contextmanager
def exclusive_output(out: str | os.PathLike, directory: bool = False, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock on `out` for the duration of the block (see module docstring).
    `directory`: `out` is a folder (`ser export`), not a file that a folder may not stand in for.
    `wait`: wait for a holder to finish instead of refusing (for an output that every process would
    compute the same, such as a distillation teacher's cross-fitted predictions).

    Re-entrant within a process: a block nested in one that holds the lock (e.g. the extraction
    loop inside `ser extract`'s driver, which locks before loading the model) just continues."""
    out = Path(out)
    path = lock_path(out).absolute()
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    try:
        if out.is_dir() and not directory:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(out))
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = _acquire(path, wait)
    except OSError as error:  # a read-only place, a file where a folder should be, …
        raise write_failure(out, error) from None
    _HELD[path] = 1
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield path
    finally:
        del _HELD[path]
        path.unlink(missing_ok=True)  # while still held: the next process locks a fresh file
        os.close(descriptor)
