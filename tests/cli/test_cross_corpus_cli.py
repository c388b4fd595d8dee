"""`ser train --test-manifest … --label-map …` through the real CLI, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from ser.data.manifest import read_manifest



def ser(*args: str, workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "ser.cli", *args, "--workdir", str(workdir)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_train_with_test_manifest_and_label_map(tmp_path, build_fbank_workspace):
    build_fbank_workspace(tmp_path, "synthetic", seed=0, speakers=4, sessions=2, per_class=4)
    build_fbank_workspace(tmp_path, "other", seed=1, renamed={"happy": "joy"}, speakers=4, sessions=2, per_class=4)
    train_manifest, test_manifest = tmp_path / "manifests" / "synthetic.csv", tmp_path / "manifests" / "other.csv"
    common = ["train", "--head", "linear", "--epochs", "2", "--device", "cpu", "--manifest", str(train_manifest),
              "--test-manifest", str(test_manifest)]

    refused = ser(*common, workdir=tmp_path)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith("error: test labels not among the training labels") and "joy (" in lines[0]
    assert lines[1].startswith("hint:") and "--label-map" in lines[1]
    assert not (tmp_path / "runs").exists()

    result = ser(*common, "--label-map", "joy=happy", workdir=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs" / "synthetic" / "fbank").iterdir()
    assert run_dir.name == "linear-e2-s0-xother"
    assert f"run directory: {run_dir}" in result.stdout and "fold1" in result.stdout
    config = json.loads((run_dir / "fold1" / "config.json").read_text())
    assert (config["fold"], config["label_map"]) == ("cross-other", {"joy": "happy"})
    predictions = pd.read_csv(run_dir / "fold1" / "predictions.csv")
    assert len(predictions) == len(read_manifest(test_manifest))
    assert predictions["id"].str.startswith("other:").all()
    assert (run_dir / "fold1" / "metrics.json").is_file()
