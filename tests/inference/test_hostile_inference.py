"""Hostile use of a trained model (issue 36, round three): damaged run and export files, waveform
arrays of every kind handed to `ser.load(...).predict`, two `ser export` to one --out, and ONNX
lengths outside [1, frames]. A real fbank workspace, a linear run trained on it, real CLI processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ser
from ser.data.manifest import read_manifest
from ser.errors import DamagedFileError, UserInputError
from ser.features.audio import load_audio
from ser.features.records import UtteranceRecord
from ser.training.config import TrainConfig
from ser.training.run import run_training

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace):
    """A synthetic corpus with its fbank cache and two linear runs (fold 1; seeds 0 and 1)."""
    workdir = build_fbank_workspace(tmp_path_factory.mktemp("hostile"), speakers=4, sessions=2, per_class=2)
    runs = {}
    for seed in (0, 1):
        config = TrainConfig.create("linear", {}, epochs=2, batch_size=8, lr=3e-3, standardize=True, seed=seed)
        runs[seed], _ = run_training(workdir, config, "1", model="fbank", device="cpu", run_name=f"linear-s{seed}")
    clip = (workdir / "manifests" / read_manifest(workdir / "manifests" / "synthetic.csv")["path"].iloc[0]).resolve()
    return {"workdir": workdir, "runs": runs, "clip": clip}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _ser(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ser.cli", *args], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# --- the memory guard in ser predict ---------------------------------------------------------------

def test_ser_predict_skips_a_clip_over_its_memory_budget_as_extract_does(workspace):
    """`--memory-budget` reaches the forward passes of `ser predict` (before, only $SER_MEMORY_BUDGET did)."""
    refused = _ser("predict", str(workspace["clip"]), "--run", str(workspace["runs"][0]), "--memory-budget", "1KiB")
    _, stderr = refused.communicate(timeout=180)
    assert refused.returncode == 2 and "Traceback" not in stderr, stderr[-1500:]
    skipped = [line for line in stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "memory budget" in skipped[0], stderr
    fits = _ser("predict", str(workspace["clip"]), "--run", str(workspace["runs"][0]), "--memory-budget", "2GiB")
    stdout, stderr = fits.communicate(timeout=180)
    assert fits.returncode == 0 and "skipped" not in stderr, stderr[-1500:]


# --- damaged run and export files: one line naming the file and what to do -------------------------

def _damage_features_json(fold: Path) -> None:
    record = json.loads((fold / "features.json").read_text())
    (fold / "features.json").write_text(json.dumps({**record, "max_seconds": -7.5}))


DAMAGE = {  # name → (what to break in a copy of the run's fold1, the file the message must name)
    "invalid features.json": (lambda fold: (fold / "features.json").write_text("{\"source\": "), "features.json"),
    "empty config.json": (lambda fold: (fold / "config.json").write_text(""), "config.json"),
    "absurd max_seconds": (_damage_features_json, "features.json"),
    "truncated model.pt": (lambda fold: (fold / "model.pt").write_bytes((fold / "model.pt").read_bytes()[:300]),
                           "model.pt"),
}


def test_damaged_run_files_are_one_line_naming_the_file_in_ser_predict(workspace, tmp_path):
    """Each was a traceback (JSONDecodeError, "--window None must be positive", torch's zip error)."""
    processes = {}
    for index, (name, (damage, _)) in enumerate(DAMAGE.items()):
        run = tmp_path / f"run{index}"
        shutil.copytree(workspace["runs"][0], run)
        damage(run / "fold1")
        processes[name] = _ser("predict", str(workspace["clip"]), "--run", str(run))
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=180)
        lines = [line for line in stderr.splitlines() if line.strip()]
        file_name = DAMAGE[name][1]
        assert process.returncode == 2 and "Traceback" not in stderr, f"{name}: {stderr[-1500:]}"
        assert len(lines) == 2 and f"{file_name} is damaged" in lines[0], name  # error: … / hint: …
        assert lines[1].startswith("hint: train that fold again"), name


def test_damaged_export_files_are_one_line(workspace, tmp_path):
    from ser.inference.export import export_model

    folder = tmp_path / "exported"
    export_model(workspace["runs"][0], folder)
    assert (folder / "feature_scaler.safetensors").is_file()  # a standardised run
    cases = {"model.safetensors": lambda p: p.write_bytes(p.read_bytes()[:40]),
             "config.json": lambda p: p.write_text(""),
             # without it the model predicted from unscaled features, other probabilities without a word
             "feature_scaler.safetensors": lambda p: p.unlink()}
    for name, damage in cases.items():
        broken = tmp_path / f"broken-{name}"
        shutil.copytree(folder, broken)
        damage(broken / name)
        with pytest.raises(DamagedFileError, match=rf"{name} is damaged .*export the run again"):
            ser.load(broken, device="cpu")



def test_export_overwrite_never_replaces_what_export_did_not_write(workspace, tmp_path):
    """`ser export RUN --out RUN --overwrite` replaced the run itself with the export (checkpoints,
    predictions and metrics gone); --overwrite now replaces only a previous export."""
    from ser.inference.export import export_model

    run = tmp_path / "run"
    shutil.copytree(workspace["runs"][0], run)
    before = sorted(str(path.relative_to(run)) for path in run.rglob("*"))
    result = subprocess.run([sys.executable, "-m", "ser.cli", "export", str(run), "--out", str(run), "--overwrite"],
                            env=_env(), capture_output=True, text=True, timeout=180)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 2, result.stderr[-1500:]
    assert lines[0] == f"error: --overwrite replaces only a folder written by `ser export`, and {run} is not one"
    assert sorted(str(path.relative_to(run)) for path in run.rglob("*")) == before
    with pytest.raises(UserInputError, match="replaces only a folder written by `ser export`"):
        export_model(run, tmp_path, overwrite=True)  # the folder above the run
    assert sorted(str(path.relative_to(run)) for path in run.rglob("*")) == before
    exported = tmp_path / "exported"
    export_model(workspace["runs"][1], exported)
    export_model(run, exported, overwrite=True)  # a previous export is still replaced
    assert json.loads((exported / "config.json").read_text())["train_config"]["seed"] == 0



@pytest.mark.parametrize("segments", [False, True])
def test_predict_refuses_an_out_that_is_one_of_its_inputs(workspace, tmp_path, segments):
    """`ser predict clips.csv --out clips.csv` replaced the user's manifest with the predictions."""
    manifest = tmp_path / ("clips.segments.csv" if segments else "clips.csv")
    shutil.copy(workspace["workdir"] / "manifests" / "synthetic.csv", manifest)
    before = manifest.read_bytes()
    out = tmp_path / "clips.csv"
    result = subprocess.run([sys.executable, "-m", "ser.cli", "predict", str(manifest), "--run", str(workspace["runs"][0]),
                             "--out", str(out), *(["--segments"] if segments else [])],
                            env=_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and f"{manifest} is one of the inputs" in result.stderr, result.stderr[-1500:]
    assert manifest.read_bytes() == before



def test_a_window_shorter_than_one_model_frame_is_refused_up_front(workspace):
    """`--window 0.001` skipped every clip as "1.0 ms long; the minimum is 25 ms", clips of seconds."""
    with pytest.raises(UserInputError, match=r"^--window 0.001 is shorter than the 25 ms a model needs"):
        ser.load(workspace["runs"][0], device="cpu", window=0.001)
    assert ser.load(workspace["runs"][0], device="cpu", window=0.025).predict(workspace["clip"]).label


# --- waveform arrays ---------------------------------------------------------------------------------

def test_integer_pcm_predicts_like_the_same_audio_as_floats(workspace):
    """int16 samples were used as float amplitudes (32768× too loud): another label than float32."""
    model = ser.load(workspace["runs"][0], device="cpu")
    wave = load_audio(UtteranceRecord("clip", str(workspace["clip"])))  # float32 in [-1, 1]
    reference = model.predict(wave, sr=16000)
    pcm16 = np.round(wave * 32767).astype(np.int16)
    for array in (pcm16, pcm16.astype(np.int32) * 65536):
        got = model.predict(array, sr=16000)
        assert got.label == reference.label, array.dtype
        for label, p in reference.probabilities.items():
            assert abs(got.probabilities[label] - p) < 0.01, array.dtype
    from ser.inference.waveform import pcm_to_float  # 8-bit PCM is unsigned, centred on 128

    np.testing.assert_array_equal(pcm_to_float(np.array([0, 128, 255], dtype=np.uint8)), [-1, 0, 127 / 128])


def test_channels_first_arrays_are_recognised(workspace):
    model = ser.load(workspace["runs"][0], device="cpu")
    wave = load_audio(UtteranceRecord("clip", str(workspace["clip"])))
    stereo_last = np.stack([wave, wave], axis=1)  # (N, 2)
    first, last = model.predict(stereo_last.T, sr=16000), model.predict(stereo_last, sr=16000)  # (2, N) was an error
    assert first == last and first.label == model.predict(wave, sr=16000).label


@pytest.mark.parametrize("sr, array, message", [
    (0, None, "sr=0 is not a sample rate"),
    (-16000, None, "sr=-16000 is not a sample rate"),
    (16000.5, None, "is not a sample rate"),
    (16000, np.zeros((40, 40), dtype=np.float32), "neither .samples, channels. nor .channels, samples."),
    (16000, np.zeros(0, dtype=np.float32), "the waveform is empty"),
    (16000, np.full(16000, np.nan, dtype=np.float32), "NaN or infinite"),
    (16000, np.zeros(16000, dtype=np.complex64), "dtype complex64"),
    (16000, np.zeros(100, dtype=np.float32), "^the waveform is 6.2 ms long; the minimum is 25 ms$"),  # named a temp file
    (10**7, np.zeros(16000, dtype=np.float32), "^the waveform is 1.6 ms long; the minimum is 25 ms$"),
    (16000, [0.0] * 16000, "^predict.. takes one recording: a path or a waveform array, not a list "),  # a TypeError
])
def test_bad_waveform_arguments_are_one_line(workspace, sr, array, message):
    """sr=0 was a libsndfile error about a temporary file; these are one UserInputError each."""
    model = ser.load(workspace["runs"][0], device="cpu")
    wave = np.zeros(16000, dtype=np.float32) if array is None else array
    with pytest.raises(UserInputError, match=message):
        model.predict(wave, sr=sr)


def test_predict_on_a_folder_says_to_use_predict_many(workspace, tmp_path):
    """It said "file not found"; predict_many([folder]) predicts every file in it."""
    model = ser.load(workspace["runs"][0], device="cpu")
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(workspace["clip"], folder / "a.wav")
    with pytest.raises(UserInputError, match="is a folder; predict.. takes one recording .*predict_many"):
        model.predict(folder)
    assert list(model.predict_many([folder])["path"]) == [str((folder / "a.wav").resolve())]


def test_predict_many_of_one_path_predicts_that_path_not_its_characters(workspace, monkeypatch):
    """predict_many("clip.wav") iterated the string: one input per character, and "/" of an
    absolute path made it search the whole file system for audio."""
    model = ser.load(workspace["runs"][0], device="cpu")
    monkeypatch.chdir(workspace["clip"].parent)
    for one in (workspace["clip"].name, workspace["clip"]):
        assert list(model.predict_many(one)["id"]) == [str(one)]
    with pytest.raises(UserInputError, match="predict_many.. takes paths .*, not a ndarray"):
        model.predict_many([workspace["clip"], np.zeros(16000, dtype=np.float32)])


# --- a run whose folds have not all finished ----------------------------------------------------------

@pytest.fixture()
def part_trained_run(workspace, tmp_path):
    """A copy of the fold-1 run with a second fold folder that has a config.json but no model.pt."""
    run = tmp_path / "run"
    shutil.copytree(workspace["runs"][0], run)
    untrained = run / "fold2"
    shutil.copytree(run / "fold1", untrained)
    (untrained / "model.pt").unlink()
    config = json.loads((untrained / "config.json").read_text())
    (untrained / "config.json").write_text(json.dumps({**config, "fold": "second"}))
    return run


def test_a_fold_still_training_is_named_with_its_process_not_as_a_missing_fold(part_trained_run, capsys,
                                                                                held_by_another_process):
    """`--fold 2` said "no fold '2' in this model" and `--fold all` averaged the finished folds
    without a word; a fold folder alone said "no model.pt"."""
    holder = held_by_another_process(part_trained_run / "fold2")  # the fold's lock, as its `ser train` holds it
    training = f"it is still being trained by process {holder.pid}"
    for fold in ("2", "second", "fold2"):
        with pytest.raises(UserInputError, match=f"fold2 of .* holds no trained model: {training}"):
            ser.load(part_trained_run, fold=fold, device="cpu")
    with pytest.raises(UserInputError, match=f"fold2 holds no trained model: {training}"):
        ser.load(part_trained_run / "fold2", device="cpu")
    model = ser.load(part_trained_run, device="cpu")
    assert [fold.name for fold in model.model.folds] == ["fold1"]
    note = f"note: fold2 is left out of the average of {part_trained_run}'s folds: {training}"
    assert note in capsys.readouterr().err


def test_an_untrained_fold_says_why_it_has_no_model(part_trained_run):
    """A failed fold gives its error.txt's first line, a stopped one its checkpoint, a dead holder's
    lock file is no training."""
    fold = part_trained_run / "fold2"
    (part_trained_run / "fold2.lock").write_text("999999999\n")  # no such process: the lock is stale
    with pytest.raises(UserInputError, match="holds no trained model: it was never trained to the end"):
        ser.load(part_trained_run, fold="2", device="cpu")
    (fold / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(UserInputError, match=r"holds no trained model: its training stopped before the end \(rerun"):
        ser.load(part_trained_run, fold="2", device="cpu")
    (fold / "error.txt").write_text("training diverged: the loss is not finite at epoch 3\n")
    with pytest.raises(UserInputError, match=r"its training failed \(training diverged: the loss is not finite"):
        ser.load(part_trained_run, fold="2", device="cpu")
    (part_trained_run / "fold1" / "model.pt").unlink()
    with pytest.raises(UserInputError, match=r"no trained model yet \(fold1: it was never trained .*; fold2: its"):
        ser.load(part_trained_run, device="cpu")


def test_a_fold_number_may_be_an_int_and_a_path_must_be_a_path(workspace):
    """`ser.load(run, fold=1)` said "no fold 1 in this model (choose … fold1 …)"; `ser.load(None)`
    was Python's TypeError from inside pathlib."""
    model = ser.load(workspace["runs"][0], fold=1, device="cpu")
    assert [fold.name for fold in model.model.folds] == ["fold1"]
    with pytest.raises(UserInputError, match=r"fold=\[1\] is not a fold"):
        ser.load(workspace["runs"][0], fold=[1], device="cpu")
    with pytest.raises(UserInputError, match="takes the path of a run or an exported folder, not NoneType"):
        ser.load(None)


# --- two exports to one --out ------------------------------------------------------------------------

START_AT = """
import sys, time
from ser.inference import export  # torch loaded: both processes now export at the same moment
start = float(sys.argv.pop(1))
while time.time() < start:
    time.sleep(0.001)
from ser.cli import run
sys.argv[0] = "ser"
run()
"""


def test_two_concurrent_exports_to_one_out_one_fails_at_once_naming_the_holder(workspace, tmp_path):
    """Both exited 0 while the folder held the other run's model; now the export holds a lock on
    --out for its whole length and the other fails at once with one line naming the holder."""
    out = tmp_path / "model"
    start = str(time.time() + 6)
    processes = [subprocess.Popen([sys.executable, "-c", START_AT, start, "export", str(workspace["runs"][seed]),
                                   "--out", str(out), "--onnx"], env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    results = [(process, *process.communicate(timeout=180)) for process in processes]
    winners = [(seed, process) for seed, (process, _, _) in enumerate(results) if process.returncode == 0]
    assert len(winners) == 1, [stderr[-800:] for _, _, stderr in results]
    (seed, winner), (loser, _, stderr) = winners[0], results[1 - winners[0][0]]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert loser.returncode == 2 and len(lines) == 2 and lines[1].startswith("hint: "), stderr[-1500:]
    assert f"{out} is being written by process {winner.pid}" in lines[0]
    exported = json.loads((out / "config.json").read_text())
    assert exported["train_config"]["seed"] == seed  # the folder holds the winner's model
    assert not list(tmp_path.glob(".model.*"))  # no staging folder left behind


# --- ONNX lengths ----------------------------------------------------------------------------------

def test_onnx_graph_clamps_lengths_to_one_through_frames(workspace, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install '.[onnx]') is not installed")
    from ser.inference.export import export_onnx
    from ser.inference.trained_model import load_run

    fold = load_run(workspace["runs"][0], "1").folds[0]
    export_onnx(fold, tmp_path / "fold1.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "fold1.onnx"), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, fold.spec["num_layers"], 30, fold.spec["in_dim"], generator=generator)  # (B, L, T, D)
    asked = np.array([0, -3, 45, 30], dtype=np.int64)  # 0, negative, beyond the 30 frames, valid
    got = session.run(None, {"features": x.numpy(), "lengths": asked})[0]
    assert np.isfinite(got).all()
    with torch.no_grad():
        logits = fold.head(fold.scaler(x, torch.tensor([1, 1, 30, 30])), torch.tensor([1, 1, 30, 30]))
    np.testing.assert_allclose(got, (logits / fold.temperature).numpy(), atol=1e-4)  # the graph's outputs ÷ T
