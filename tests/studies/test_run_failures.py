"""Runs that go wrong are never scored: divergence and damaged run files, in train, sweep and report
(real trainer on a real fbank cache of a small synthetic corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ser.data.extraction import extract_corpus
from ser.errors import CacheError, DivergedError
from ser.studies.grid import Grid
from ser.studies.report import write_report
from ser.studies.results import read_run
from ser.studies.sweep import SweepSettings, run_sweep
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.protocol import protocol_folds, select_folds
from ser.training.run import run_training, train_folds


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    return build_fbank_workspace(tmp_path_factory.mktemp("failures-ws"), speakers=4, sessions=2, per_class=3)


@pytest.fixture(scope="module")
def data(workspace):
    return load_training_data(workspace / "manifests" / "synthetic.csv", workspace / "cache" / "synthetic" / "fbank.h5",
                              device="cpu")


def linear(lr: float, epochs: int = 2) -> TrainConfig:
    return TrainConfig.create("linear", {}, epochs=epochs, batch_size=8, lr=lr, seed=0)


def first_fold(config: TrainConfig, data):
    return select_folds(protocol_folds(config, data), "1")[0][1]


def test_a_diverging_run_stops_with_a_clear_error_and_writes_no_metrics(data, tmp_path):
    torch.set_num_threads(1)
    config = linear(1e30)
    with pytest.raises(DivergedError, match="training diverged: .* not finite|training diverged: the training loss"):
        train_folds(config, data, tmp_path / "run", "1")
    assert not (tmp_path / "run" / "fold1" / "metrics.json").exists()
    assert read_run(tmp_path / "run" / "fold1")["status"] == "diverged"  # as `ser report` will list it


def test_a_sweep_marks_a_diverged_run_and_the_report_lists_it(workspace, tmp_path):
    grid = Grid(({"head": ("linear",), "seed": (0,), "epochs": (2,), "lr": (1e-3, 1e30)},), folds=("1",))
    outcome = run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "sweep", device="cpu", jobs=1))
    assert (outcome.done, outcome.diverged, outcome.failed) == (1, 1, 0)
    table = pd.read_csv(outcome.table_path)
    diverged = table[table["status"] == "diverged"]
    assert len(diverged) == 1 and diverged["ua"].isna().all()
    assert "training diverged" in diverged.iloc[0]["error"]
    assert not (tmp_path / "sweep" / diverged.iloc[0]["run_dir"] / "metrics.json").exists()
    summary = pd.read_csv(outcome.summary_path)
    assert len(summary) == 1 and summary.loc[0, "n"] == 1  # the diverged run is not averaged in

    report = write_report(tmp_path / "sweep").read_text()
    assert "1 diverged" in report
    assert f"| {diverged.iloc[0]['run_dir']} | diverged |" in report


def test_damaged_run_files_are_listed_by_report_and_redone_by_train_and_sweep(workspace, data, tmp_path, capsys):
    grid = Grid(({"head": ("linear",), "seed": (0, 1), "epochs": (1,)},), folds=("1",))
    settings = SweepSettings(workdir=workspace, out=tmp_path / "sweep", device="cpu", jobs=1)
    first = run_sweep(grid, settings)
    run = tmp_path / "sweep" / pd.read_csv(first.table_path).loc[0, "run_dir"]
    metrics = (run / "metrics.json").read_text()

    (run / "metrics.json").write_text(metrics[: len(metrics) // 2])  # truncated
    (run / "checkpoint.pt").write_bytes(b"")  # a 0-byte checkpoint
    report = write_report(tmp_path / "sweep").read_text()
    assert "1 damaged" in report and "metrics.json cannot be read" in report

    again = run_sweep(grid, settings)  # treated as unfinished: trained again, saying so
    assert (again.skipped, again.done, again.failed) == (1, 1, 0)
    assert "metrics.json was damaged" in capsys.readouterr().err
    assert (run / "metrics.json").read_text() == metrics  # the same seed: the same result
    assert (run / "metrics.json.damaged").is_file() and not (run / "checkpoint.pt").exists()
    (run / "metrics.json").write_text(json.dumps({**json.loads(metrics), "test": 5}))  # JSON, but edited: a traceback
    report = write_report(tmp_path / "sweep").read_text()
    assert "1 damaged" in report and "its `test` is no object of metrics): delete it and run again" in report
    (run / "metrics.json").write_text(metrics)

    config = linear(1e-3, epochs=1)
    fold_dir = tmp_path / "train" / "fold1"
    fold_dir.mkdir(parents=True)
    (fold_dir / "config.json").write_text("{\"head\": ")
    (fold_dir / "checkpoint.pt").write_bytes(b"")
    train_fold(config, data, first_fold(config, data), fold_dir)
    notes = capsys.readouterr().err
    assert "config.json was damaged" in notes and "checkpoint.pt was damaged" in notes
    assert (fold_dir / "metrics.json").is_file()


def test_a_cache_of_another_model_is_refused_by_train(workspace, tmp_path):
    (tmp_path / "manifests").mkdir()
    text = (workspace / "manifests" / "synthetic.csv").read_text().replace("../data/", f"{workspace}/data/")
    (tmp_path / "manifests" / "synthetic.csv").write_text(text)
    extract_corpus(tmp_path, "mfcc", out=tmp_path / "cache" / "synthetic" / "fbank.h5", device="cpu")  # misfiled
    for model in ("fbank", None):  # asked for by name, or the only cache
        with pytest.raises(CacheError, match=r"fbank\.h5 holds features of model 'mfcc' .*, not 'fbank'"):
            run_training(tmp_path, linear(1e-3, epochs=1), "1", model=model, device="cpu")
    assert not (tmp_path / "runs").exists()


def test_an_empty_config_json_is_redone_by_sweep_as_by_train(workspace, data, tmp_path, capsys):
    """The sweep's "is this fold finished" test read metrics.json only, so a fold whose config.json
    was emptied was skipped forever while `ser report` said to rerun it; it now shares train's test."""
    grid = Grid(({"head": ("linear",), "seed": (0,), "epochs": (1,)},), folds=("1",))
    settings = SweepSettings(workdir=workspace, out=tmp_path / "sweep", device="cpu", jobs=1)
    first = run_sweep(grid, settings)
    run = tmp_path / "sweep" / pd.read_csv(first.table_path).loc[0, "run_dir"]
    config, metrics = (run / "config.json").read_text(), (run / "metrics.json").read_text()
    (run / "config.json").write_text("")
    assert "config.json cannot be read" in read_run(run)["error"]  # what `ser report` lists

    again = run_sweep(grid, settings)
    assert (again.skipped, again.done) == (0, 1)
    assert "config.json was damaged" in capsys.readouterr().err
    assert (run / "config.json").read_text() == config and (run / "metrics.json").read_text() == metrics
    assert (run / "config.json.damaged").read_text() == ""

    train_config = linear(1e-3, epochs=1)  # `ser train` on the same damage: trained again, config.json rewritten
    fold_dir = tmp_path / "train" / "fold1"
    train_fold(train_config, data, first_fold(train_config, data), fold_dir)
    (fold_dir / "config.json").write_text("")
    train_fold(train_config, data, first_fold(train_config, data), fold_dir)
    assert "config.json was damaged" in capsys.readouterr().err
    assert read_run(fold_dir)["status"] == "done" and (fold_dir / "config.json").stat().st_size > 0


def test_a_finite_explosion_stops_the_real_cli_as_divergence(workspace, tmp_path):
    """`--head linear --lr 1e6` reached a dev loss of 3e16 with finite outputs, predicted one class and
    exited 0 with UA 0.25; outputs of absurd magnitude now stop it as NaN does."""
    import os
    import subprocess
    import sys

    out = tmp_path / "exploded"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "ser.cli", "train", "--head", "linear", "--lr", "1e6", "--epochs",
                             "3", "--fold", "1", "--workdir", str(workspace), "--out", str(out), "--device", "cpu"],
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "error: training diverged: " in result.stderr and "beyond ±10000" in result.stderr
    assert not (out / "fold1" / "metrics.json").exists()
    assert read_run(out / "fold1")["status"] == "diverged"


def test_divergence_rules_hold_for_finite_explosions():
    from ser.training.divergence import check_loss, check_outputs

    check_loss(7.0, 1, 1, 1e-3)  # ln(1000 classes) at initialisation is fine
    check_outputs(np.array([[50.0, -80.0]]), "dev", 1)  # large but meaningful logits are fine
    with pytest.raises(DivergedError, match="training diverged: the training loss is 3e\\+16"):
        check_loss(3e16, 2, 5, 1e6)
    with pytest.raises(DivergedError, match="outputs on 1 test utterance.* reach 2e\\+05"):
        check_outputs(np.array([[1.0, 2.0], [2e5, 0.0]]), "test", 3)
