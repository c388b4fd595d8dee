"""`ser predict`, `ser export`, `ser.load` and `ser train --fold none` on a real workspace: the
synthetic corpus, an fbank cache and a tiny wav2vec2 cache (saved with save_pretrained, loaded by
path), heads trained from them, and new audio written with soundfile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import ser
from ser.cli import main
from ser.data.corpora import CORPORA
from ser.data.extraction import extract_corpus
from ser.data.manifest import read_manifest, write_manifest
from ser.errors import ModelLoadError
from ser.inference.predict import collect_inputs
from ser.training.config import TrainConfig
from ser.training.run import run_training

TINY_WAV2VEC2 = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def _train(workdir: Path, model: str, head: str, which: str, **options) -> Path:
    config = TrainConfig.create(head, {"spec_augment": False} if head != "linear" else {}, epochs=2, batch_size=8,
                                lr=3e-3, **options)
    run_dir, _ = run_training(workdir, config, which, model=model, device="cpu", run_name=f"{head}-{which}")
    return run_dir


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synthetic corpus (2 sessions), its fbank and tiny-wav2vec2 caches, and three runs."""
    from transformers import AutoModel, Wav2Vec2Config

    torch.set_num_threads(1)
    workdir = tmp_path_factory.mktemp("ws")
    rows = CORPORA.get("synthetic").prepare(workdir / "audio", speakers=4, sessions=2, per_class=2)
    write_manifest(rows, workdir / "manifests" / "synthetic.csv")
    torch.manual_seed(1)
    tiny = workdir / "models" / "tiny-wav2vec2"
    AutoModel.from_config(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(tiny)
    extract_corpus(workdir, "fbank")
    extract_corpus(workdir, str(tiny))
    return {
        "workdir": workdir,
        "tiny": tiny,
        "fbank": _train(workdir, "fbank", "shiftcnn", "all", standardize=True),
        "w2v": _train(workdir, str(tiny), "linear", "1", layers=[1, 2]),
    }


def _test_manifest(workdir: Path, run: Path, fold: str, out: Path) -> pd.DataFrame:
    """A manifest of the fold's test rows, in the fold's order; returns its predictions.csv."""
    predictions = pd.read_csv(run / fold / "predictions.csv", dtype=str)
    manifest = read_manifest(workdir / "manifests" / "synthetic.csv").set_index("id")
    rows = manifest.loc[predictions["id"]].reset_index()
    rows["path"] = [str((workdir / "manifests" / p).resolve()) for p in rows["path"]]
    write_manifest(rows, out)
    return predictions


def _same_text(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Labels and probabilities as written to CSV (float32 text), row for row."""
    columns = ["prediction"] + [c for c in theirs.columns if c.startswith("p_")]
    ours = ours.set_index("id").loc[theirs["id"], columns]
    assert (ours.to_numpy() == theirs.set_index("id")[columns].to_numpy()).all()


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF this is not audio at all")
    empty = folder / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    short = folder / "short.wav"
    sf.write(short, np.full(160, 0.1, dtype=np.float32), 16000)  # 10 ms
    return {"missing": folder / "missing.wav", "corrupt": corrupt, "empty": empty, "short": short}


def _ser(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the `ser` command line in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ser", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_predict_reproduces_the_fbank_runs_predictions_and_skips_bad_files(workspace, tmp_path, monkeypatch, capsys):
    workdir, run = workspace["workdir"], workspace["fbank"]
    expected = _test_manifest(workdir, run, "fold1", tmp_path / "test.csv")
    bad = _bad_files(tmp_path / "bad")
    out = tmp_path / "predicted.csv"
    code, stdout, stderr = _ser(monkeypatch, capsys, "predict", str(tmp_path / "test.csv"), *map(str, bad.values()),
                                "--run", str(run), "--fold", "1", "--out", str(out), "--uncalibrated")
    assert code == 0, stderr
    assert f"wrote {out}" in stdout
    _same_text(pd.read_csv(out, dtype=str), expected)  # predictions.csv holds the uncalibrated softmax
    lines = stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("skipped ") for line in lines), stderr
    reasons = dict(line.removeprefix("skipped ").split(": ", 1) for line in lines)
    assert "file not found" in reasons[str(bad["missing"])]
    assert "cannot read" in reasons[str(bad["corrupt"])]
    assert "empty" in reasons[str(bad["empty"])]
    assert "10.0 ms long; the minimum is 25 ms" in reasons[str(bad["short"])]


def test_api_reproduces_the_tiny_wav2vec2_run_from_files_and_arrays(workspace, tmp_path):
    workdir, run = workspace["workdir"], workspace["w2v"]
    expected = _test_manifest(workdir, run, "fold1", tmp_path / "test.csv")
    clf = ser.load(run, "1", device="cpu", calibrated=False)  # predictions.csv holds the uncalibrated softmax
    assert clf.backbones[None].source == str(workspace["tiny"].resolve())  # the cache's backbone, by path
    table = clf.predict_many([tmp_path / "test.csv"])
    table.to_csv(tmp_path / "predicted.csv", index=False)
    _same_text(pd.read_csv(tmp_path / "predicted.csv", dtype=str), expected)
    path = table["path"].iloc[0]
    one = clf.predict(path)
    assert one.label == table["prediction"].iloc[0]
    # alone rather than in a batch of 16: the head's matrix products may round differently in the last bit
    assert one.probabilities == pytest.approx({c[2:]: float(table[c].iloc[0]) for c in table if c.startswith("p_")},
                                              rel=0, abs=1e-6)
    wave, rate = sf.read(path, dtype="float32")
    assert clf.predict(wave, sr=rate) == one  # an array goes through the same path as its file


def test_fold_all_averages_the_fold_models(workspace, tmp_path):
    run = workspace["fbank"]
    files = sorted(str(p) for p in (workspace["workdir"] / "audio" / "wav").rglob("*.wav"))[:5]
    both = ser.load(run, "all", device="cpu").predict_many(files)
    each = [ser.load(run, k, device="cpu").predict_many(files) for k in ("1", "2")]
    columns = [c for c in both.columns if c.startswith("p_")]
    mean = (each[0][columns].to_numpy() + each[1][columns].to_numpy()) / 2
    np.testing.assert_allclose(both[columns].to_numpy(), mean, rtol=0, atol=1e-6)
    assert not np.allclose(each[0][columns].to_numpy(), each[1][columns].to_numpy())


def test_a_run_without_features_record_finds_its_cache_in_the_workspace(workspace):
    run = workspace["fbank"]
    older = run.with_name("trained-before-features-json")
    shutil.copytree(run / "fold1", older / "fold1")
    (older / "fold1" / "features.json").unlink()
    clip = sorted((workspace["workdir"] / "audio" / "wav").rglob("*.wav"))[0]
    assert ser.load(older, device="cpu").predict(clip) == ser.load(run, "1", device="cpu").predict(clip)
    assert not (older / "fold1" / "features.json").exists()  # predicting never writes into a run


def test_long_files_are_cut_into_windows_with_segments(workspace, tmp_path, monkeypatch, capsys):
    clf = ser.load(workspace["fbank"], "1", device="cpu")
    files = sorted((workspace["workdir"] / "audio" / "wav").rglob("*.wav"))[:4]
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([sf.read(f, dtype="float32")[0] for f in files]), 16000, subtype="FLOAT")
    seconds = sf.info(long).duration
    assert seconds > clf.window
    result = clf.predict_records(collect_inputs([long]))
    segments, row = result.segments, result.table.iloc[0]
    assert row["windows"] == len(segments) >= 3
    assert segments["start"].iloc[0] == 0 and segments["end"].iloc[-1] == pytest.approx(seconds, abs=1e-3)
    assert (segments["end"] - segments["start"]).max() <= clf.window + 1e-6
    assert np.diff(segments["start"].to_numpy()[:-1]) == pytest.approx(clf.hop)
    columns = [c for c in segments.columns if c.startswith("p_")]
    np.testing.assert_allclose(row[columns].to_numpy(float), segments[columns].mean().to_numpy(), atol=1e-6)
    cropped = ser.load(workspace["fbank"], "1", device="cpu", windows=False).predict_many([long])
    assert cropped["windows"].iloc[0] == 1
    code, stdout, stderr = _ser(monkeypatch, capsys, "predict", str(long), "--run", str(workspace["fbank"]),
                                "--fold", "1", "--segments", "--plot", str(tmp_path / "plots"))
    assert code == 0, stderr
    assert "predictions" in stdout and "windows" in stdout and str(row["prediction"]) in stdout
    assert (tmp_path / "plots" / "long.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # emotion over time


def test_the_printed_table_shows_every_files_whole_id_however_deep_its_folder(workspace, tmp_path, monkeypatch,
                                                                             capsys):
    folder = tmp_path / "recordings of the second session, kept apart" / "speaker seven, every emotion"
    folder.mkdir(parents=True)
    for source in sorted((workspace["workdir"] / "audio" / "wav").rglob("*.wav"))[:3]:
        shutil.copy(source, folder / source.name)
    monkeypatch.setenv("COLUMNS", "100")
    code, stdout, stderr = _ser(monkeypatch, capsys, "predict", str(folder), "--run", str(workspace["fbank"]),
                                "--fold", "1", "--segments")
    assert code == 0, stderr
    for table in stdout.split("└")[:2]:  # the predictions, then the windows
        header = next(line for line in table.splitlines() if line.startswith("┃"))
        rows = [line for line in table.splitlines() if line.startswith("│")]
        assert max(map(len, [header, *rows])) <= 100, table  # nothing pushed past the terminal's edge
        assert header.split("┃")[-2].strip() == "p_sad", table  # the last probability column is shown
        ids = "".join(row.split("│")[1].replace(" ", "") for row in rows)  # the id's lines, joined
        assert all(str(path).replace(" ", "") in ids for path in sorted(folder.iterdir())), table


def test_export_predicts_like_its_run(workspace, tmp_path, monkeypatch, capsys):
    workdir, run = workspace["workdir"], workspace["w2v"]
    _test_manifest(workdir, run, "fold1", tmp_path / "test.csv")
    folder = tmp_path / "exported"
    code, stdout, stderr = _ser(monkeypatch, capsys, "export", str(run), "--out", str(folder), "--include-backbone")
    assert code == 0 and f"exported 1 fold(s) (fold1) → {folder}" in stdout, stderr
    bundled = ser.load(folder, device="cpu").backbones
    assert [backbone.source for backbone in bundled.values()] == [str((folder / "backbone").resolve())]
    assert {"config.json", "model.safetensors", "labels.json", "backbone.json", "README.md"} <= {
        p.name for p in folder.iterdir()}
    assert json.loads((folder / "backbone.json").read_text())["source"] == str(workspace["tiny"].resolve())
    card = (folder / "README.md").read_text()
    metrics = json.loads((run / "fold1" / "metrics.json").read_text())["test"]
    assert f"{metrics['ua']:.4f}" in card and "dev-selected" in card
    calibration = json.loads((run / "fold1" / "metrics.json").read_text())["calibration"]
    assert (f"| fold1 | {calibration['temperature']:.4f} | {calibration['test_before']['ece']:.4f} | "
            f"{calibration['test_after']['ece']:.4f} |") in card
    for source, out in (("--model-dir", "exported.csv"), ("--run", "run.csv")):
        code, _, stderr = _ser(monkeypatch, capsys, "predict", str(tmp_path / "test.csv"), source,
                               str(folder if source == "--model-dir" else run), "--out", str(tmp_path / out))
        assert code == 0, stderr
    assert (tmp_path / "exported.csv").read_text() == (tmp_path / "run.csv").read_text()
    code, _, stderr = _ser(monkeypatch, capsys, "export", str(run), "--out", str(folder))
    assert code == 2 and "is not empty" in stderr  # an export is never overwritten by accident
    code, _, stderr = _ser(monkeypatch, capsys, "export", str(workspace["fbank"]), "--out", str(tmp_path / "f"),
                           "--include-backbone")  # the hint spoke of hub models
    assert code == 2 and "features are computed by ser itself: there is no backbone to copy" in stderr, stderr


def test_onnx_head_matches_torch_on_cached_features(workspace, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install '.[onnx]') is not installed")
    from ser.features.cache import CacheReader
    from ser.inference.export import export_onnx
    from ser.inference.trained_model import load_run, pad_batch

    fold = load_run(workspace["fbank"], "1").folds[0]  # shiftcnn + feature scaler
    error = export_onnx(fold, tmp_path / "fold1.onnx")
    assert error <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "fold1.onnx"), providers=["CPUExecutionProvider"])
    with CacheReader(workspace["workdir"] / "cache" / "synthetic" / "fbank.h5") as cache:
        x, lengths = pad_batch([cache.read(utt) for utt in cache.ids[:7]])  # (7, 1, T, 80), unequal lengths
    got = session.run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        want = fold.head(fold.scaler(x, lengths), lengths).numpy() / fold.temperature  # calibrated logits
    assert fold.temperature != 1.0 and np.abs(got - want).max() <= 1e-4

@pytest.mark.parametrize("head_name", ["timnet", "transformer"])
def test_timnet_and_the_transformer_export_to_onnx(head_name, tmp_path):
    """TIM-Net (the best head on ASED) failed: the tracing exporter bakes its count of real frames
    into the graph and torch.export stopped at it; the Transformer's tracing crashed with a traceback
    instead of falling back to torch.export."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install '.[onnx]') is not installed")
    from ser.heads.presets import create_head
    from ser.inference.export import export_onnx
    from ser.inference.trained_model import FoldModel

    torch.manual_seed(0)
    options = {"num_blocks": 1, "attention_heads": 2} if head_name == "transformer" else {}
    head = create_head(head_name, 24, 2, 4, spec_augment=False, **options).eval()
    fold = FoldModel(name="fold1", head=head, scaler=None, task=None, batch_size=8,
                     spec={"name": head_name, "in_dim": 24, "num_layers": 2, "num_classes": 4})
    assert export_onnx(fold, tmp_path / "fold1.onnx") <= 1e-4  # batches of 1-5 clips, 23-96 frames
    session = onnxruntime.InferenceSession(str(tmp_path / "fold1.onnx"), providers=["CPUExecutionProvider"])
    x, lengths = torch.randn(3, 2, 70, 24), torch.tensor([70, 12, 41])  # (B, L, T, D), padded
    got = session.run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, head(x, lengths).numpy(), atol=1e-4)



def test_runs_are_calibrated_on_dev_and_predict_export_and_load_apply_the_temperature(workspace, tmp_path,
                                                                                      monkeypatch, capsys):
    from ser.inference.export import export_model
    from ser.training.calibration import ece, recalibrate

    workdir, run = workspace["workdir"], workspace["fbank"]
    block = json.loads((run / "fold1" / "metrics.json").read_text())["calibration"]
    temperature = json.loads((run / "fold1" / "calibration.json").read_text())["temperature"]
    assert block["temperature"] == temperature > 0 and temperature != 1 and block["fitted_on"] == "dev"
    assert all(set(block[part]) == {"ece", "nll", "brier"} for part in ("test_before", "test_after", "dev_after"))
    assert block["dev_after"]["nll"] <= block["dev_before"]["nll"] + 1e-9
    expected = _test_manifest(workdir, run, "fold1", tmp_path / "test.csv")
    tables = {}
    for name, extra in (("calibrated", []), ("raw", ["--uncalibrated"]), ("abstain", ["--min-confidence", "0.5"])):
        code, _, stderr = _ser(monkeypatch, capsys, "predict", str(tmp_path / "test.csv"), "--run", str(run),
                               "--fold", "1", "--out", str(tmp_path / f"{name}.csv"), *extra)
        assert code == 0, stderr
        tables[name] = pd.read_csv(tmp_path / f"{name}.csv").set_index("id").loc[expected["id"]]
    columns = [c for c in expected.columns if c.startswith("p_")]
    calibrated, raw = tables["calibrated"][columns].to_numpy(), tables["raw"][columns].to_numpy()
    np.testing.assert_allclose(calibrated, recalibrate(raw, temperature), rtol=0, atol=1e-5)
    assert not np.allclose(calibrated, raw, atol=1e-3)
    assert (tables["calibrated"]["prediction"] == tables["raw"]["prediction"]).all()  # T never moves the argmax
    labels = np.array([columns.index(f"p_{label}") for label in expected["label"]])
    assert ece(calibrated, labels) == pytest.approx(block["test_after"]["ece"], abs=1e-5)
    unsure = calibrated.max(axis=1) < 0.5
    assert (tables["abstain"]["prediction"][unsure] == "uncertain").all()
    assert (tables["abstain"]["prediction"][~unsure] == tables["calibrated"]["prediction"][~unsure]).all()
    exported = export_model(run, tmp_path / "exported", fold="1").folder
    table = ser.load(exported, device="cpu").predict_many([tmp_path / "test.csv"]).set_index("id").loc[expected["id"]]
    np.testing.assert_allclose(table[columns].to_numpy(), calibrated, rtol=0, atol=1e-6)


def test_dimensional_run_predicts_its_arousal_valence_dominance(workspace, tmp_path):
    workdir = workspace["workdir"]
    run = _train(workdir, "fbank", "linear", "1", task="dimensional")
    assert not (run / "fold1" / "calibration.json").exists()  # dimensional runs are not calibrated
    expected = _test_manifest(workdir, run, "fold1", tmp_path / "test.csv")
    table = ser.load(run, device="cpu").predict_many([tmp_path / "test.csv"]).set_index("id").loc[expected["id"]]
    for name in ("arousal", "valence", "dominance"):
        np.testing.assert_array_equal(table[name].to_numpy(), expected[f"pred_{name}"].astype(float).to_numpy())


def test_a_backbone_missing_offline_fails_at_once_with_the_how_to_line(workspace, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "run"
    shutil.copytree(workspace["w2v"] / "fold1", copy / "fold1")
    record_path = copy / "fold1" / "features.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "source": "ser-tests/not-on-this-machine", "model": "x"}))
    clip = sorted((workspace["workdir"] / "audio" / "wav").rglob("*.wav"))[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, stderr = _ser(monkeypatch, capsys, "predict", str(clip), "--run", str(copy))
    err = stderr.strip().splitlines()
    assert code == 2
    assert err[0] == ("error: the run's backbone ser-tests/not-on-this-machine is not on this machine and "
                      "downloads are off")
    assert err[1].startswith("hint: on a connected machine run `hf download ser-tests/not-on-this-machine")
    assert len(err) == 2

    moved = dict(record, source=str(tmp_path / "gone"))
    record_path.write_text(json.dumps(moved))
    with pytest.raises(ModelLoadError, match="is not on this machine"):
        ser.load(copy)
    assert ser.load(copy, model_dir=workspace["tiny"], device="cpu").backbones[None].num_layers == 3


def test_fold_none_trains_on_every_labelled_utterance_without_test(workspace):
    workdir = workspace["workdir"]
    run = _train(workdir, "fbank", "linear", "none", standardize=True)
    full = run / "full"
    config = json.loads((full / "config.json").read_text())
    manifest = read_manifest(workdir / "manifests" / "synthetic.csv")
    assert config["sizes"]["test"] == 0
    assert config["sizes"]["train"] + config["sizes"]["dev"] == len(manifest)
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["test"] is None and metrics["dev"]["ua"] >= 0 and metrics["best_epoch"] >= 1
    assert not (full / "predictions.csv").exists()
    table = ser.load(run, device="cpu").predict_many([workdir / "audio" / "wav" / "Ses01"])  # a folder, recursively
    assert sorted(table["path"]) == sorted(str(p.resolve()) for p in (workdir / "audio" / "wav" / "Ses01").rglob("*.wav"))
    assert set(table["prediction"]) <= set(manifest["label"])


def test_ser_help_and_import_ser_do_not_import_torch():
    code = ("import sys; sys.argv = ['ser', '--help']\n"
            "import ser\nassert 'torch' not in sys.modules, 'import ser loaded torch'\n"
            "from ser.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'numpy', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout and "export" in result.stdout
