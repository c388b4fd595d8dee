"""Hostile use, round three, as a user meets it: real `ser` subprocesses on real files. Paths that
are not audio, a NUL in a manifest id, a cache whose headers lie or whose checksums fail, a report
of runs that never finished, and `ser --version`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from ser.features.cache import CacheReader, utterance_key

pytestmark = pytest.mark.slow

LINEAR = ["--head", "linear", "--fold", "1", "--epochs", "1", "--device", "cpu"]


def ser(*args: str, cwd: Path | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "ser.cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error line of a command that failed the way `ser` fails: exit 2, `error:` + `hint:`."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note: ")]
    assert lines[0].startswith("error: ") and lines[-1].startswith("hint: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory, build_fbank_workspace) -> Path:
    return build_fbank_workspace(tmp_path_factory.mktemp("hostile-ws"), speakers=4, sessions=2, per_class=3)


@pytest.fixture
def workspace(built, tmp_path) -> Path:
    """A fresh copy of the fbank workspace (manifest + finished cache) to damage."""
    return Path(shutil.copytree(built, tmp_path / "ws", symlinks=True))


def cache_of(workspace: Path) -> Path:
    return workspace / "cache" / "synthetic" / "fbank.h5"


def test_version_is_the_installed_distributions():
    result = ser("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"ser {version('ser')}"


def test_paths_that_are_not_audio_have_reasons_in_extract_prepare_and_predict(workspace, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "folder.wav").mkdir()
    os.mkfifo(bad / "fifo.wav")  # opened for reading, it would block the command forever
    (bad / "zero.wav").write_bytes(b"")
    sf.write(bad / "cut.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000, subtype="PCM_16")
    (bad / "cut.wav").write_bytes((bad / "cut.wav").read_bytes()[: 44 + 8000])  # header: 1 s; file: 0.25 s
    good = tmp_path / "good.wav"
    sf.write(good, 0.1 * np.random.default_rng(1).standard_normal(16000), 16000)
    reasons = {"folder": "is a folder, not an audio file", "device": "/dev/zero is a character device",
               "fifo": "is a FIFO (named pipe), not an audio file", "zero": "is empty (0 bytes)",
               "cut": "is truncated: its header declares 1.00 s, the file holds 0.25 s"}
    paths = {"folder": bad / "folder.wav", "device": Path("/dev/zero"), "fifo": bad / "fifo.wav",
             "zero": bad / "zero.wav", "cut": bad / "cut.wav"}
    rows = "".join(f"{name},{path},neutral\n" for name, path in paths.items())
    (tmp_path / "table.csv").write_text(f"id,path,label\ngood,{good},happy\n" + rows)

    prepared = ser("prepare", "csv", str(tmp_path / "table.csv"), "--workdir", str(tmp_path / "p"), timeout=60)
    assert prepared.returncode == 0, prepared.stderr
    listed = (tmp_path / "p" / "manifests" / "csv.missing.txt").read_text()
    extracted = ser("extract", "--model", "fbank", "--workdir", str(tmp_path / "e"),
                    "--manifest", str(tmp_path / "table.csv"), timeout=60)
    assert extracted.returncode == 0, extracted.stderr
    assert "extracted 1" in extracted.stdout and "skipped 5" in extracted.stdout
    skipped_csv = next((tmp_path / "e" / "cache").rglob("*.skipped.csv")).read_text()
    for name, reason in reasons.items():
        assert reason in listed and reason in skipped_csv and f"{name}," in skipped_csv, (name, listed, skipped_csv)

    trained = ser("train", *LINEAR, "--workdir", str(workspace))
    assert trained.returncode == 0, trained.stderr
    (run,) = (workspace / "runs" / "synthetic" / "fbank").iterdir()
    files = [name for name in paths if name != "folder"]  # predict searches a folder for audio files
    predicted = ser("predict", str(good), *(str(paths[name]) for name in files), "--run", str(run), "--fold", "1",
                    "--device", "cpu", timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    said = dict(line.removeprefix("skipped ").split(": ", 1) for line in predicted.stderr.strip().splitlines())
    for name in files:
        assert reasons[name] in said[str(paths[name])], (name, said)


def test_a_nul_byte_in_a_manifest_id_stops_extract_before_anything_starts(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(8000), 16000)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "toy.csv").write_bytes(b"id,path\nfine,../a.wav\nbad\x00id,../a.wav\n")
    error = one_line_error(ser("extract", "--model", "fbank", "--workdir", str(tmp_path)))
    assert "row 2 (line 3) has the control character '\\x00' in its `id` 'bad\\x00id'" in error
    assert not (tmp_path / "cache").exists()  # no .partial, no lock: nothing started


def forge_frames(cache: Path, frames: int, index_too: bool = False) -> str:
    """Replace the first utterance's features by a dataset declaring `frames` frames (and holding none)."""
    with h5py.File(cache, "r+") as f:
        utt = f["ids"].asstr()[0]
        old = f["features"][utterance_key(utt)]
        shape, dtype = old.shape, old.dtype
        del f["features"][utterance_key(utt)]
        f["features"].create_dataset(utterance_key(utt), shape=(shape[0], frames, shape[2]), dtype=dtype,
                                     chunks=(shape[0], 1024, shape[2]))
        if index_too:
            f["lengths"][0] = frames
    return utt


@pytest.mark.parametrize("index_too", [False, True], ids=["dataset", "dataset-and-index"])
def test_a_cache_declaring_2_to_the_40_frames_is_one_line_in_train_and_info(workspace, index_too):
    utt = forge_frames(cache_of(workspace), 2**40, index_too)
    info = ser("cache", "info", str(cache_of(workspace)))
    error = one_line_error(info)
    if index_too:
        assert "its index declares" in error and "more than the" in error
    else:
        assert "damaged" in info.stdout and f"damaged {utt}: the features of utterance '{utt}' declare shape" in info.stdout
        assert f"1 utterance(s) cannot be read, e.g. '{utt}'" in error
    error = one_line_error(ser("train", *LINEAR, "--workdir", str(workspace)))
    assert "is damaged" in error and "Unable to allocate" not in error


def flip_chunk(cache: Path, utt: str, pooled: bool) -> None:
    """Flip bytes of one utterance's checksummed features, or of its pooled row."""
    with h5py.File(cache, "r") as f:
        if pooled:
            row = list(f["ids"].asstr()[()]).index(utt)
            offset = f["pooled"].id.get_chunk_info_by_coord((row, 0, 0, 0)).byte_offset
        else:
            offset = f["features"][utterance_key(utt)].id.get_chunk_info(0).byte_offset
    with open(cache, "r+b") as handle:
        handle.seek(offset + 16)
        data = handle.read(4)
        handle.seek(offset + 16)
        handle.write(bytes(b ^ 0xFF for b in data))


def test_a_failed_pooled_checksum_stops_probe_and_train_with_one_line(workspace):
    with CacheReader(cache_of(workspace)) as cache:
        utt = cache.ids[3]
    flip_chunk(cache_of(workspace), utt, pooled=True)
    for command in (["probe", "--workdir", str(workspace)], ["train", *LINEAR, "--workdir", str(workspace)]):
        error = one_line_error(ser(*command))
        assert f"damaged: the pooled statistics of utterance '{utt}' cannot be read" in error, command
    assert ser("cache", "info", str(cache_of(workspace))).returncode == 0  # headers alone look fine
    verified = ser("cache", "info", str(cache_of(workspace)), "--verify")
    assert f"damaged {utt}: the pooled statistics" in verified.stdout
    one_line_error(verified)


def test_rerunning_extract_repairs_chunks_that_fail_their_checksum(workspace):
    cache = cache_of(workspace)
    with CacheReader(cache) as reader:
        ids = reader.ids
        expected = {utt: reader.read(utt) for utt in ids[:3]}
    flip_chunk(cache, ids[1], pooled=False)
    flip_chunk(cache, ids[2], pooled=True)
    rerun = ser("extract", "--model", "fbank", "--workdir", str(workspace))
    assert rerun.returncode == 0, rerun.stderr
    assert "already complete" not in rerun.stdout
    assert "repaired 2 damaged utterance(s)" in rerun.stdout and "extracted 2" in rerun.stdout
    with CacheReader(cache) as reader:
        assert reader.ids == ids and reader.damage(verify=True) == {}
        for utt, features in expected.items():
            np.testing.assert_array_equal(reader.read(utt), features)
    again = ser("extract", "--model", "fbank", "--workdir", str(workspace))
    assert again.returncode == 0 and "already complete" in again.stdout


def test_report_of_unfinished_runs_points_at_files_that_exist(tmp_path):
    failed, pending = tmp_path / "runs" / "a" / "fold1", tmp_path / "runs" / "b" / "fold1"
    for folder in (failed, pending):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"head": "linear", "seed": 0}')
    (failed / "error.txt").write_text("cache/x.h5 is damaged: its index cannot be read\n")
    error = one_line_error(ser("report", str(tmp_path / "runs")))
    assert "none of the 2 runs" in error and "1 failed" in error and "1 pending" in error
    hint = ser("report", str(tmp_path / "runs")).stderr.strip().splitlines()[-1]
    assert f"{failed / 'error.txt'} says: cache/x.h5 is damaged" in hint and (failed / "error.txt").is_file()

    shutil.rmtree(failed.parent)
    only_pending = ser("report", str(tmp_path / "runs"))
    one_line_error(only_pending)
    assert "error.txt" not in only_pending.stderr and "rerun" in only_pending.stderr
