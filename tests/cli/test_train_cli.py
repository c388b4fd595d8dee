"""End to end through the real CLI: synthetic corpus → fbank cache → `ser train --fold all`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A few-epoch setting that learns the synthetic corpus from fbank features (measured: mean UA
# ≈ 0.50 over the 4 sessions for seeds 0 and 1; chance is 0.25).
TRAIN_OPTIONS = [
    "--head", "shiftcnn", "--standardize", "--head-option", "spec_augment=false",
    "--head-option", "input_projection=false",
    "--epochs", "8", "--batch-size", "16", "--lr", "3e-3", "--seed", "0", "--device", "cpu",
]  # fmt: skip


def ser(*args: str, workdir: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "ser.cli", *args, "--workdir", str(workdir)],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ser {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ws")
    ser("prepare", "synthetic", str(workdir / "audio"), "--speakers", "8", "--sessions", "4", "--per-class", "6",
        workdir=workdir)
    ser("extract", "--model", "fbank", "--device", "cpu", workdir=workdir)
    result = ser("train", *TRAIN_OPTIONS, "--fold", "all", "--jobs", "2", workdir=workdir)  # folds side by side
    runs = workdir / "runs" / "synthetic" / "fbank"
    (run_dir,) = list(runs.iterdir())
    return workdir, run_dir, result.stdout


def test_train_all_folds_is_well_above_chance(trained):
    _, run_dir, stdout = trained
    assert sorted(p.name for p in run_dir.glob("fold*")) == ["fold1", "fold2", "fold3", "fold4"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["test"]["ua"]["per_fold"]) == 4
    assert summary["test"]["ua"]["mean"] > 0.45  # 4 classes: chance is 0.25
    assert "mean ± std" in stdout and "fold4" in stdout
    assert f"{summary['test']['ua']['mean']:.4f}" in stdout
    # stdout is a pipe here, not a terminal: plain progress lines instead of a progress bar
    assert "epoch 1/8" in stdout and "epoch 8/8" in stdout and "dev_ua" in stdout


def test_rerun_of_a_killed_fold_resumes_to_identical_metrics(trained):
    workdir, run_dir, _ = trained  # fold1 trained side by side (--jobs 2), resumed here alone
    out = workdir / "again"
    command = [sys.executable, "-m", "ser.cli", "train", *TRAIN_OPTIONS, "--fold", "1", "--out", str(out),
               "--workdir", str(workdir)]  # fmt: skip
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "fold1" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (out / "fold1" / "metrics.json").exists(), "killed too late to test resume"

    ser("train", *TRAIN_OPTIONS, "--fold", "1", "--out", str(out), workdir=workdir)
    resumed = json.loads((out / "fold1" / "metrics.json").read_text())
    uninterrupted = json.loads((run_dir / "fold1" / "metrics.json").read_text())
    assert resumed == uninterrupted  # same seed, same numbers, interruption or not
    assert not checkpoint.exists()


def test_a_second_train_of_a_fold_in_training_is_refused_at_once_naming_the_first(trained):
    workdir, _, _ = trained
    out = workdir / "raced"
    options = [*TRAIN_OPTIONS, "--epochs", "400", "--fold", "3", "--out", str(out)]  # the last --epochs counts
    first = subprocess.Popen([sys.executable, "-m", "ser.cli", "train", *options, "--workdir", str(workdir)],
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "fold3" / "config.json").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        second = ser("train", *options, workdir=workdir, check=False)
        assert first.poll() is None, "the first run ended before the second asked: nothing was raced"
    finally:
        first.kill()
        first.wait()
    assert second.returncode != 0 and "Traceback" not in second.stderr
    assert second.stderr.startswith(f"error: {out / 'fold3'} is being written by process {first.pid} "), second.stderr
    assert "wait for that run to finish" in second.stderr


def test_finished_run_is_not_retrained(trained):
    workdir, run_dir, _ = trained
    before = (run_dir / "fold2" / "metrics.json").stat().st_mtime_ns
    result = ser("train", *TRAIN_OPTIONS, "--fold", "2", workdir=workdir)
    assert (run_dir / "fold2" / "metrics.json").stat().st_mtime_ns == before
    assert "fold2" in result.stdout


def test_unknown_head_is_a_one_line_error(trained):
    workdir, _, _ = trained
    result = ser("train", "--head", "shiftcnm", workdir=workdir, check=False)
    assert result.returncode == 2
    assert "error: unknown head 'shiftcnm'" in result.stderr and "did you mean shiftcnn" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((workdir / "runs").rglob("shiftcnm*")), "a refused run must leave no run directory"


def test_folds_trained_side_by_side_equal_folds_trained_one_at_a_time(trained):
    import torch

    workdir, run_dir, stdout = trained  # --jobs 2: worker 1 trained fold2, then fold4
    assert stdout.count("epoch 8/8") == 4  # every worker's progress reached the terminal
    out = workdir / "alone"
    ser("train", *TRAIN_OPTIONS, "--fold", "4", "--out", str(out), workdir=workdir)  # one thread (OMP_NUM_THREADS=1)
    assert json.loads((out / "fold4" / "metrics.json").read_text()) == json.loads((run_dir / "fold4" / "metrics.json").read_text())
    alone = torch.load(out / "fold4" / "model.pt", weights_only=False)["state_dict"]
    side_by_side = torch.load(run_dir / "fold4" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(alone[name], side_by_side[name]) for name in side_by_side)


def test_jobs_with_several_threads_or_a_streamed_cache_is_a_one_line_error(trained):
    workdir, _, _ = trained
    result = ser("train", *TRAIN_OPTIONS, "--jobs", "2", "--threads", "2", workdir=workdir, check=False)
    assert result.returncode == 2 and "--jobs 2 trains each fold on one thread" in result.stderr
    streamed = ser("train", *TRAIN_OPTIONS, "--jobs", "2", "--stream", "--out", str(workdir / "refused"),
                   workdir=workdir, check=False)
    assert streamed.returncode == 2 and "--jobs 2 needs the cache in memory" in streamed.stderr
    assert "Traceback" not in result.stderr + streamed.stderr and not (workdir / "refused").exists()
