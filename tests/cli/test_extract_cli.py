"""`ser extract` and `ser cache info` as a user runs them: real subprocesses on a tiny workspace."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.slow


def ser(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", "from ser.cli import run; run()", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=180)


@pytest.fixture
def workspace(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = ["id,path,start,end"]
    for i in range(3):
        sf.write(audio / f"u{i}.wav", 0.1 * np.random.default_rng(i).standard_normal(16000 + 4000 * i), 16000)
        rows.append(f"spk{i}/u{i},../audio/u{i}.wav,,")
    rows.append("seg,../audio/u2.wav,0.25,1.0")
    rows.append("lost,../audio/lost.wav,,")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "toy.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_extract_then_info_then_refusals(workspace):
    done = ser("extract", "--model", "fbank", "--workdir", str(workspace))
    assert done.returncode == 0, done.stderr
    cache = workspace / "cache" / "toy" / "fbank.h5"
    assert cache.is_file() and "extracted 4" in done.stdout and "skipped 1" in done.stdout
    assert "lost" in done.stdout and "file not found" in done.stdout
    assert "lost" in (workspace / "cache" / "toy" / "fbank.skipped.csv").read_text()

    info = ser("cache", "info", str(cache))
    assert info.returncode == 0, info.stderr
    assert "ser-cache" in info.stdout and "manifest_sha256" in info.stdout and "utterances" in info.stdout

    again = ser("extract", "--model", "fbank", "--workdir", str(workspace))
    assert again.returncode == 0 and "already complete" in again.stdout

    other = ser("extract", "--model", "mfcc", "--workdir", str(workspace), "--out", str(cache))
    assert other.returncode == 2
    assert other.stderr.startswith("error: ") and "made by model 'fbank'" in other.stderr and "hint: " in other.stderr
    assert cache.is_file()


def test_missing_model_is_one_clear_line_immediately(workspace):
    started = time.monotonic()
    result = ser("extract", "--model", "microsoft/wavlm-base", "--workdir", str(workspace))
    assert result.returncode == 2 and time.monotonic() - started < 60
    assert "error: model 'microsoft/wavlm-base'" in result.stderr and "hf download microsoft/wavlm-base" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_shows_examples():
    result = ser("extract", "--help")
    assert result.returncode == 0 and "ser extract --model fbank" in result.stdout and "--on-error" in result.stdout
