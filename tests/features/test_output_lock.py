"""One writer per cache: concurrent extractions on one output never leave a corrupt cache.

Real processes (forked, so the 20 trials stay cheap) race with `--overwrite` on one output; every
trial ends with a cache equal to an uninterrupted one, and a loser is refused at once, naming the
holder's pid.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np

from ser.errors import OutputBusyError
from ser.features.backbones import load_backbone
from ser.features.cache import CacheReader
from ser.features.cache_writer import partial_dir
from ser.features.extract import extract
from ser.features.output_lock import exclusive_output, holder_of, lock_path

REFUSED = 3


def assert_same_cache(a, b) -> None:
    with CacheReader(a) as left, CacheReader(b) as right:
        assert left.ids == right.ids and left.lengths == right.lengths
        for utt in left.ids:
            np.testing.assert_array_equal(left.read(utt), right.read(utt))
            np.testing.assert_array_equal(left.pooled(utt), right.pooled(utt))


def _extract_in_child(records, out, delay: float, queue) -> None:
    time.sleep(delay)
    try:
        extract(records, load_backbone("fbank"), out, manifest_sha256="m", overwrite=True, flush_seconds=0.0,
                batch_seconds=0.3)
    except OutputBusyError as error:
        queue.put(str(error))
        queue.close()
        queue.join_thread()  # flushed before the hard exit
        os._exit(REFUSED)
    os._exit(0)


def test_twenty_concurrent_overwrites_leave_a_whole_cache_or_refuse(audio_files, tmp_path):
    records = audio_files([0.3 + 0.02 * i for i in range(12)])
    reference = tmp_path / "reference.h5"
    extract(records, load_backbone("fbank"), reference, manifest_sha256="m")
    out = tmp_path / "raced.h5"
    context = multiprocessing.get_context("fork")
    rng = random.Random(0)
    outcomes = []
    for _ in range(20):
        messages = context.Queue()
        children = [context.Process(target=_extract_in_child, args=(records, out, delay, messages))
                    for delay in (0.0, rng.uniform(0.0, 0.05))]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
        codes = sorted(child.exitcode for child in children)
        assert codes in ([0, 0], [0, REFUSED]), codes
        if REFUSED in codes:
            message = messages.get(timeout=5)
            assert "is being written by process " in message and str(out) in message
            assert any(f"process {child.pid}" in message for child in children)
        outcomes.append(codes[1])
        assert_same_cache(out, reference)
        assert not partial_dir(out).exists() and not lock_path(out).exists()
        assert not list(tmp_path.glob("*.tmp"))
    assert REFUSED in outcomes  # the race was real at least once


def test_a_second_ser_extract_fails_at_once_naming_the_holder(audio_files, tmp_path):
    records = audio_files([0.3, 0.4])
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "toy.csv").write_text("id,path\n" + "".join(f"{r.id},{r.path}\n" for r in records))
    out = tmp_path / "cache" / "toy" / "fbank.h5"
    with exclusive_output(out) as held:
        assert held.read_text().strip() == str(os.getpid())
        with exclusive_output(out):  # re-entrant within the holding process
            pass
        assert lock_path(out).exists()
        second = subprocess.run([sys.executable, "-m", "ser.cli", "extract", "--model", "fbank", "--workdir",
                                 str(tmp_path)], capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith(f"error: {out} is being written by process {os.getpid()} ")
    assert "Traceback" not in second.stderr and not out.exists()
    assert not lock_path(out).exists()
    with exclusive_output(out):  # free again
        pass


# Locks the file named in argv[1], says so, and writes its pid only after argv[2] seconds: the
# moment between a holder's flock and its pid, which a refused process once reported as "another
# process".
LATE_PID = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
os.write(descriptor, f"{os.getpid()}\\n".encode())
sys.stdin.read()
"""


def test_a_refusal_names_a_holder_that_has_only_just_locked(tmp_path):
    out = tmp_path / "cache.h5"
    holder = subprocess.Popen([sys.executable, "-c", LATE_PID, str(lock_path(out)), "0.2"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        try:
            with exclusive_output(out):
                raise AssertionError("the lock was held")
        except OutputBusyError as refused:
            assert f"is being written by process {holder.pid} " in str(refused)
    finally:
        holder.communicate("", timeout=30)


# Locks and names itself in the file named in argv[1], says so, and on a line from stdin finishes
# as a holder does: removes the file, then exits (dropping the lock).
FINISHING_HOLDER = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(descriptor, fcntl.LOCK_EX)
os.write(descriptor, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
sys.stdin.readline()
os.unlink(sys.argv[1])
"""


def test_a_holder_that_finishes_just_after_the_refusal_is_still_named(tmp_path):
    # The refused process names whoever held the file it tried to lock, even once that holder
    # has removed the file: CI once saw "another process" when a holder finished in that moment.
    path = lock_path(tmp_path / "cache.h5")
    holder = subprocess.Popen([sys.executable, "-c", FINISHING_HOLDER, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    descriptor = os.open(path, os.O_RDWR)
    try:
        holder.communicate("done\n", timeout=30)
        assert not path.exists()
        assert holder_of(descriptor, patience=0.0) == f"process {holder.pid}"
    finally:
        os.close(descriptor)


def test_a_waiting_writer_says_whom_it_waits_for_and_goes_on_once_the_holder_finishes(tmp_path, capsys):
    out = tmp_path / "oof.csv"
    holder = subprocess.Popen([sys.executable, "-c", FINISHING_HOLDER, str(lock_path(out))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    finish = threading.Timer(0.5, lambda: (holder.stdin.write("done\n"), holder.stdin.flush()))
    finish.start()
    try:
        with exclusive_output(out, wait=True):  # without wait: OutputBusyError at once
            assert holder.wait(timeout=30) == 0  # it only got here once the holder had let go
            assert lock_path(out).read_text() == f"{os.getpid()}\n"
    finally:
        finish.join()
    assert capsys.readouterr().err == f"note: waiting for process {holder.pid}, which is writing {out}\n"
    assert not lock_path(out).exists()
