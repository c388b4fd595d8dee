"""`ser prepare` and `ser folds` as a user runs them (real subprocesses)."""

import subprocess
import sys
from pathlib import Path

import pytest

from ser.data.manifest import read_manifest

pytestmark = pytest.mark.slow


def ser(*args, cwd):
    return subprocess.run([sys.executable, "-c", "from ser.cli import run; run()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_prepare_synthetic_then_folds_prints_balanced_folds(tmp_path):
    done = ser("prepare", "synthetic", "data", "--workdir", "ws", "--per-class", "3", "--seed", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "labels: angry 24, happy 24, neutral 24, sad 24" in done.stdout
    assert "speakers: 8" in done.stdout and "sessions: 4" in done.stdout and "missing files: 0" in done.stdout
    df = read_manifest(tmp_path / "ws" / "manifests" / "synthetic.csv")
    assert len(df) == 96 and (tmp_path / "data" / "wav" / "Ses01").is_dir()

    shown = ser("folds", "--workdir", "ws", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "4 folds, scheme session" in shown.stdout
    fold_rows = [line for line in shown.stdout.splitlines() if "Ses0" in line]
    assert len(fold_rows) == 4
    for line in fold_rows:  # fold, train, dev, test, test speakers, then 6 test items per class
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        # dev: one whole speaker of the six in training (12 of 72 utterances: the nearest to 20%)
        assert cells[1:] == ["60", "12", "24", "2", "6", "6", "6", "6"], line

    kfold = ser("folds", "--workdir", "ws", "--folds", "kfold", "--k", "3", cwd=tmp_path)
    assert kfold.returncode == 0 and "speaker-dependent" in kfold.stdout

    df.loc[(df["session"] == "Ses02") & (df["label"] == "sad"), "label"] = "bored"  # a class of one session
    df.to_csv(tmp_path / "ws" / "manifests" / "synthetic.csv", index=False)
    noted = ser("folds", "--workdir", "ws", cwd=tmp_path)
    assert "note: fold Ses02: no training utterance of bored (6 test utterances)" in noted.stdout, noted.stdout


def test_errors_are_one_line_with_a_hint(tmp_path):
    (tmp_path / "notemodb").mkdir()
    wrong_root = ser("prepare", "emodb", "notemodb", cwd=tmp_path)
    assert wrong_root.returncode == 2
    assert "error: " in wrong_root.stderr and "expected folder wav/ is missing" in wrong_root.stderr
    assert "hint: " in wrong_root.stderr and "Traceback" not in wrong_root.stderr
    unknown = ser("prepare", "iemocapp", "x", cwd=tmp_path)
    assert unknown.returncode == 2 and "did you mean iemocap" in unknown.stderr
    no_manifest = ser("folds", "--workdir", "empty", cwd=tmp_path)
    assert no_manifest.returncode == 2 and "ser prepare" in no_manifest.stderr


def test_a_relative_root_and_a_name_give_a_manifest_whose_files_exist(tmp_path):
    import numpy as np
    import soundfile as sf

    from ser.data.manifest import resolve_path

    for label in ("calm", "tense"):
        (tmp_path / "recordings" / label).mkdir(parents=True)
        for k in range(2):
            sf.write(tmp_path / "recordings" / label / f"{k}.wav", np.zeros(8000, dtype=np.float32), 16000)
    done = ser("prepare", "folder", "recordings", "--workdir", "ws", "--name", "clinic", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / "ws" / "manifests" / "clinic.csv"
    df = read_manifest(manifest)
    assert len(df) == 4 and set(df["corpus"]) == {"clinic"}
    assert all(Path(resolve_path(p, manifest)).is_file() for p in df["path"])  # found again at extract time


def test_a_name_must_be_a_plain_file_name():
    import typer

    from ser.cli.prepare_cmd import _check_name

    assert _check_name("iemocap-improv_2") == "iemocap-improv_2"
    with pytest.raises(typer.BadParameter, match="corpus name"):
        _check_name("../x")
