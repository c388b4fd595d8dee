"""Signals and exit codes of `ser sweep`, with real processes: SIGTERM stops the workers and exits,
a SIGKILLed sweep takes its workers with it, and a sweep whose every run failed exits non-zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import TrainingError

pytestmark = pytest.mark.slow

SWEEP = [sys.executable, "-c", "from ser.cli import run; run()", "sweep", "--head", "shiftcnn", "--seeds", "0,1",
         "--epochs", "500", "--fold", "1", "--jobs", "2", "--batch-runs", "off", "--device", "cpu"]  # the worker pool


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, build_fbank_workspace) -> Path:
    return build_fbank_workspace(tmp_path_factory.mktemp("signals"), speakers=4, sessions=2, per_class=2)


def descendants(pid: int) -> set[int]:
    """Live (not zombie) processes below `pid`, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()
            and (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")}


def start_sweep_and_wait_for_training(workdir: Path, out: Path) -> tuple[subprocess.Popen, set[int]]:
    sweep = subprocess.Popen([*SWEEP, "--workdir", str(workdir), "--out", str(out)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 200
    while not list(out.glob("*/fold1/checkpoint.pt")):  # the workers are up and training
        assert sweep.poll() is None, sweep.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    workers = descendants(sweep.pid)
    assert len(workers) >= 2
    return sweep, workers


def wait_until_gone(pids: set[int], seconds: float = 30) -> set[int]:
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def test_sigterm_stops_the_workers_and_exits(workdir, tmp_path):
    sweep, workers = start_sweep_and_wait_for_training(workdir, tmp_path / "sweep")
    sweep.send_signal(signal.SIGTERM)
    code = sweep.wait(timeout=60)
    stderr = sweep.stderr.read()
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "error: sweep stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert not wait_until_gone(workers)
    runs = list((tmp_path / "sweep").glob("*/fold1"))
    assert any((run / "checkpoint.pt").is_file() for run in runs)  # a rerun resumes from it
    assert not any((run / "error.txt").exists() or (run / "metrics.json").exists() for run in runs)  # stopped


def test_workers_die_with_a_sigkilled_sweep(workdir, tmp_path):
    sweep, workers = start_sweep_and_wait_for_training(workdir, tmp_path / "sweep")
    sweep.kill()
    sweep.wait(timeout=30)
    assert not wait_until_gone(workers), "orphaned workers kept running"


def test_a_sweep_whose_every_run_failed_is_an_error(workdir, tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--head", "linear", "--head-option", "layers=[5]", "--epochs",
                                      "1", "--fold", "1", "--jobs", "1", "--device", "cpu", "--workdir", str(workdir),
                                      "--out", str(tmp_path / "sweep")])
    assert isinstance(result.exception, TrainingError), result.output
    assert "every run of the sweep failed (1 failed, 0 diverged)" in str(result.exception)
