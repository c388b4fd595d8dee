"""The memory guard: a clip whose forward pass would exceed the memory budget is skipped (or fails
the run) before it runs, with the --max-seconds that fits. Tested without risking the machine: a
tiny budget against a clip whose estimate exceeds it, and the estimate against a measured peak."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from ser.errors import AudioError, UserInputError
from ser.features.backbones import load_backbone
from ser.features.extract import extract
from ser.features.memory_guard import BUDGET_ENV, check_forward_memory, memory_budget, parse_size
from ser.features.records import UtteranceRecord

SECONDS = 16000


def test_sizes_read_like_people_write_them(monkeypatch):
    assert parse_size("2GiB") == 2 * 2**30 and parse_size("500MB") == 500 * 10**6
    assert parse_size("1.5g") == 1_500_000_000 and parse_size("1024") == 1024 and parse_size(" 64 MiB ") == 64 * 2**20
    for bad in ("lots", "2 parsecs", "-1GiB", "0"):
        with pytest.raises(UserInputError, match="is not a memory size"):
            parse_size(bad)
    monkeypatch.setenv(BUDGET_ENV, "3GiB")
    assert memory_budget() == 3 * 2**30 and memory_budget("1GiB") == 2**30  # the option wins over the variable
    monkeypatch.delenv(BUDGET_ENV)
    assert 0 < memory_budget() < os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("family", ["wavlm", "wav2vec2", "wavlm-large", "whisper"])
def test_the_estimate_grows_with_the_clip_and_quadratically_for_attention(tiny_model_dir, family):
    backbone = load_backbone(str(tiny_model_dir(family)))
    estimates = [backbone.peak_memory_bytes(seconds * SECONDS) for seconds in (1, 2, 5, 10, 30, 60, 120, 600, 3600)]
    assert all(a < b for a, b in zip(estimates, estimates[1:]))
    if family == "wavlm":  # WavLM always materialises its T × T position bias: 10 minutes ≫ 10 × 1 minute
        assert estimates[7] > 40 * estimates[5]
    fbank = load_backbone("fbank")
    assert fbank.peak_memory_bytes(60 * SECONDS) < fbank.peak_memory_bytes(600 * SECONDS) < 2**30


MEASURE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from ser.features.backbones import load_backbone

    def status(key):
        return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))

    backbone = load_backbone(sys.argv[1])
    wave = (0.1 * np.random.default_rng(0).standard_normal(int(float(sys.argv[2]) * 16000))).astype(np.float32)
    backbone.forward([wave[:16000]])  # first-call allocations (kernels, thread pools) are not the clip's
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    before = status("VmRSS")
    backbone.forward([wave])
    print(json.dumps({"measured": status("VmHWM") - before, "estimated": backbone.peak_memory_bytes(len(wave))}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak-RSS reset")
def test_the_estimate_is_roughly_the_measured_peak(tiny_model_dir):
    """40 s (2,000 frames) through the tiny WavLM: measured ≈ 0.26-0.33 GB, where T² terms dominate."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(tiny_model_dir("wavlm")), "40"], capture_output=True,
                          text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["measured"] <= result["estimated"] <= 3 * result["measured"], result


def _clips(folder, seconds: dict[str, float]) -> list[UtteranceRecord]:
    records = []
    for i, (name, length) in enumerate(seconds.items()):
        wave = 0.1 * np.random.default_rng(i).standard_normal(int(length * SECONDS))
        sf.write(folder / f"{name}.wav", wave.astype(np.float32), SECONDS)
        records.append(UtteranceRecord(name, str(folder / f"{name}.wav")))
    return records


def test_a_clip_over_the_budget_is_skipped_before_its_forward_with_the_crop_that_fits(tiny_model_dir, tmp_path):
    backbone = load_backbone(str(tiny_model_dir("wavlm")))
    records = _clips(tmp_path, {"short": 1.0, "long": 60.0})
    budget = backbone.peak_memory_bytes(20 * SECONDS) + 1  # 20 s fits, 21 s does not
    summary = extract(records, backbone, tmp_path / "c.h5", memory_budget=budget)
    assert summary.extracted == 1 and list(summary.skipped) == ["long"]
    reason = summary.skipped["long"]
    assert re.fullmatch(r"needs ≈\d+\.\d [MG]iB for its 2999 frames \(60 s\), over the \d+\.\d MiB memory budget: "
                        r"crop with --max-seconds 20 \(or raise --memory-budget\)", reason), reason
    assert "long" in (tmp_path / "c.skipped.csv").read_text()

    with pytest.raises(AudioError, match=r"long: needs ≈.* crop with --max-seconds 20"):
        extract(records, backbone, tmp_path / "fail.h5", memory_budget=budget, on_error="fail")
    with pytest.raises(AudioError, match=r"over the 1\.0 MiB memory budget: raise --memory-budget"):
        check_forward_memory(backbone, "short", SECONDS, 2**20)  # nothing fits: no crop to offer
    cropped = extract(records, backbone, tmp_path / "cropped.h5", memory_budget=budget, max_seconds=20)
    assert cropped.extracted == 2 and not cropped.skipped  # the advice works


def _ser(*args: str, cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ser.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=240, env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200", **env))


@pytest.mark.slow
def test_ser_extract_skips_or_fails_on_a_clip_over_the_budget(tiny_model_dir, tmp_path):
    _clips(tmp_path, {"short": 1.0, "long": 60.0})
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "toy.csv").write_text("id,path\nshort,../short.wav\nlong,../long.wav\n")
    model = str(tiny_model_dir("wavlm"))

    skipped = _ser("extract", "--model", model, "--memory-budget", "100MiB", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "extracted 1" in skipped.stdout and "skipped 1" in skipped.stdout
    assert "over the 100.0 MiB memory budget" in skipped.stdout and "--max-seconds" in skipped.stdout

    failed = _ser("extract", "--model", model, "--on-error", "fail", "--out", "other.h5", cwd=tmp_path,
                  **{BUDGET_ENV: "100MiB"})  # the variable sets it as the option does
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert re.match(r"error: long: needs ≈.* over the 100\.0 MiB memory budget: crop with --max-seconds \d+",
                    failed.stderr), failed.stderr

    bad = _ser("extract", "--model", model, "--memory-budget", "lots", cwd=tmp_path)
    assert bad.returncode == 2 and "'lots' is not a memory size" in bad.stderr
