"""`ser` ends without the interpreter's teardown, yet with its exit status, exit handlers and all
its output; while another thread runs, or under a profiler, it exits the normal way.

Real `ser` processes; a module-level object whose finaliser writes to stderr shows whether the
interpreter was torn down.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ser.cli.process_exit import exit_code_of

PROGRAM = """
import atexit, sys, threading, time
from pathlib import Path

class Finalized:
    def __del__(self):
        sys.stderr.write("torn down\\n")

sentinel = Finalized()  # freed only by a teardown
atexit.register(lambda: sys.stderr.write("exit handler ran\\n"))
target = sys.argv[1]
if target != "-":  # a thread still writing when the command returns
    threading.Thread(target=lambda: (time.sleep(0.3), Path(target).write_text("written"))).start()
sys.argv = ["ser", *sys.argv[2:]]
from ser.cli import {entry}
{entry}()
"""


def ser(*arguments: str, entry: str = "run", thread_writes: str = "-") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM.format(entry=entry), thread_writes, *arguments],
                          capture_output=True, text=True, timeout=120)


def test_a_finished_command_skips_the_teardown_but_not_its_exit_handlers_or_output():
    done = ser("list", "heads")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["exit handler ran"]
    normal = ser("list", "heads", entry="main")  # the same command, ended the normal way
    assert normal.stderr.splitlines() == ["exit handler ran", "torn down"]
    assert done.stdout == normal.stdout and "shiftcnn" in done.stdout


@pytest.mark.parametrize("arguments, status, says", [
    (("train", "--threads", "0"), 2, "Invalid value for '--threads'"),  # a usage error, the click way
    (("list", "nothing-of-that-kind"), 2, "error: cannot list 'nothing-of-that-kind'"),  # a SerError: one line and a hint
])
def test_a_failing_command_keeps_its_status_and_message(arguments, status, says):
    done = ser(*arguments)
    assert done.returncode == status
    assert says in done.stderr and "Traceback" not in done.stderr
    assert "torn down" not in done.stderr and "exit handler ran" in done.stderr


def test_a_running_thread_is_waited_for(tmp_path):
    written = tmp_path / "written.txt"
    done = ser("list", "heads", thread_writes=str(written))
    assert done.returncode == 0, done.stderr
    assert written.read_text() == "written"  # an exit without teardown would have ended the thread mid-sleep


def test_a_profiled_command_exits_the_normal_way_so_the_profile_is_written(tmp_path):
    profile = tmp_path / "list.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "ser.cli", "list", "heads"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert profile.stat().st_size > 0 and "shiftcnn" in done.stdout


def test_a_message_code_exits_with_status_one(capsys):
    assert exit_code_of(None) == 0 and exit_code_of(3) == 3
    assert exit_code_of("stopped: disk full") == 1
    assert capsys.readouterr().err == "stopped: disk full\n"


LEAVES_HDF5_OPEN = """
import sys
import h5py, numpy as np
handle = h5py.File(sys.argv[1], "w")  # written, never closed: HDF5's shutdown has to close it
handle.create_dataset("x", data=np.arange(100_000, dtype=np.float32), chunks=(1000,))
handle.attrs["complete"] = True
sys.argv = ["ser", "list", "heads"]
from ser.cli import run
run()
"""


def test_an_hdf5_file_left_open_is_closed_by_the_normal_exit(tmp_path):
    """The fast exit skipped HDF5's own shutdown, which closes files left open: the file was left
    unreadable ("bad object header version number"). With a file open, ser exits the normal way."""
    import h5py
    import numpy as np

    path = tmp_path / "left-open.h5"
    done = subprocess.run([sys.executable, "-c", LEAVES_HDF5_OPEN, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "shiftcnn" in done.stdout, done.stderr
    with h5py.File(path, "r") as written:
        np.testing.assert_array_equal(written["x"][:], np.arange(100_000, dtype=np.float32))
        assert bool(written.attrs["complete"])
