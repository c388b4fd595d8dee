"""Ending the `ser` process without tearing the interpreter down.

A normal exit frees every module and object one by one; with torch, pandas and scipy loaded that
takes 0.3-0.7 s after the command has finished (benchmarks/process_exit.py). Once a command has
returned, its files are closed and renamed into place, so the process runs its exit handlers
(logging, multiprocessing, trackers), flushes its output and ends at once. It exits the normal
way while another thread is alive (the normal exit waits for it), while a profiler or tracer
watches the process (`python -m cProfile -m ser.cli …`, pdb, coverage: they write their results
after the program returns), and while an HDF5 file is still open (HDF5's own shutdown, skipped by
the fast exit, is what flushes and closes it: without it the file is left unreadable).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_code_of(code: object) -> int:
    """The status `sys.exit(code)` would end with; a message (a non-int code) is printed as it would be."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def hdf5_files_open() -> bool:
    """Whether this process holds an HDF5 file open (only asked when h5py has been imported)."""
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return False
    try:
        return bool(h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE))
    except Exception:  # noqa: BLE001 — when in doubt, let HDF5 shut down the normal way
        return True


def exit_without_teardown(code: object) -> NoReturn:
    """End the process with `sys.exit(code)`'s status: exit handlers run and output is flushed,
    but modules and objects are not freed one by one. The normal exit while other threads run, a
    profiler or tracer is set, or an HDF5 file is open (after the exit handlers, which may close it)."""
    if threading.active_count() > 1 or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    status = exit_code_of(code)
    atexit._run_exitfuncs()  # (run once: it empties the list of handlers)
    if hdf5_files_open():
        sys.exit(status)  # (its message, if any, is printed already)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)
