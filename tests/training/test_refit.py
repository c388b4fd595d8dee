"""`--refit`: after its epochs a fold trains a fresh head (the same seed) on train + dev for the
epochs that dev chose, as the probe refits with the C that dev chose. Checked against that
definition (a plain run on a fold whose training part is train + dev, read at that epoch), through
`ser train`, streamed, resumed, and `ser sweep` (which trains such runs solo, never stacked).
Real synthetic audio and a real fbank cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser.data.fold import Fold
from ser.data.workspace import Workspace
from ser.errors import TrainingError
from ser.studies.grid import build_grid
from ser.studies.sweep import SweepSettings, run_sweep
from ser.training import run_dir as files
from ser.training.batched_loop import MemberSpec, train_group
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.protocol import protocol_folds
from ser.training.run import run_training

RECIPE = {"epochs": 8, "batch_size": 8, "lr": 3e-3}


@pytest.fixture(scope="module")
def workspace(build_fbank_workspace, tmp_path_factory) -> Workspace:
    """4 speakers in 2 sessions, 6 clips per class: 96 utterances."""
    return Workspace(build_fbank_workspace(tmp_path_factory.mktemp("refit"), speakers=4, sessions=2, per_class=6))


@pytest.fixture(scope="module")
def data(workspace):
    return load_training_data(workspace.manifest_for("synthetic"), workspace.cache_path("synthetic", "fbank"),
                              device="cpu")


def _config(**options) -> TrainConfig:
    return TrainConfig.create("shiftcnn", **RECIPE, model="fbank", corpus="synthetic", **options)


@pytest.fixture(scope="module")
def refitted(workspace, tmp_path_factory) -> tuple[Path, dict]:
    """`ser train --refit --fold 1`: (its fold directory, metrics.json)."""
    run_dir, results = run_training(workspace.root, _config(refit=True), "1", device="cpu",
                                    out=tmp_path_factory.mktemp("runs") / "refit")
    return run_dir / "fold1", results["fold1"]


def test_the_refit_is_a_fresh_head_trained_on_train_and_dev_up_to_the_epoch_dev_chose(refitted, data, tmp_path):
    fold_dir, metrics = refitted
    plain = train_fold(_config(), data, protocol_folds(_config(), data)[0], tmp_path / "plain")
    epoch = plain["best_epoch"]
    assert 1 <= epoch < RECIPE["epochs"]  # the refit stops inside the schedule: its length matters
    assert metrics["best_epoch"] == epoch and metrics["refit"]["epochs"] == epoch
    assert metrics["test_before_refit"] == plain["test"]  # the dev-selected weights, as a plain run keeps them
    assert metrics["dev"] == plain["dev"]

    # the definition: a plain run whose training part is train + dev, read at the epoch dev chose
    fold = protocol_folds(_config(), data)[0]
    seen = Fold(fold.name, fold.train + fold.dev, fold.dev, fold.test, fold.dev_split)
    train_fold(_config(record_test_curve=True), data, seen, tmp_path / "definition")
    curve = pd.read_csv(tmp_path / "definition" / files.HISTORY).set_index("epoch")
    assert metrics["test"]["ua"] == pytest.approx(curve.loc[epoch, "test_ua"], abs=1e-12)
    probabilities = [pd.read_csv(d / files.PREDICTIONS).filter(regex="^p_").to_numpy()
                     for d in (fold_dir, tmp_path / "plain")]
    assert probabilities[0].shape == probabilities[1].shape == (len(fold.test), 4)
    assert not np.allclose(*probabilities, atol=1e-3)  # a different head, not a copy of the selected one
    assert metrics["refit"]["utterances"] == len(fold.train) + len(fold.dev)

    assert len(pd.read_csv(fold_dir / files.REFIT_HISTORY)) == epoch
    assert len(pd.read_csv(fold_dir / files.HISTORY)) == RECIPE["epochs"]  # the selection phase's curves
    assert not any((fold_dir / name).exists() for name in files.RESUME_FILES)
    assert files.read_json(fold_dir / files.CONFIG)["refit"] is True
    assert "refit" not in files.read_json(tmp_path / "plain" / files.CONFIG)  # as configs were before
    assert _config(refit=True).run_name().endswith("-refit-s0")
    # the temperature is fitted on dev outputs of the weights that dev selected, and applied to the refit
    calibration = metrics["calibration"]
    assert calibration["dev_before"] == plain["calibration"]["dev_before"]
    assert calibration["temperature"] == plain["calibration"]["temperature"]
    assert calibration["test_before"] != plain["calibration"]["test_before"]


def test_a_streamed_refit_gives_the_same_numbers(workspace, refitted, tmp_path):
    _, metrics = refitted
    _, results = run_training(workspace.root, _config(refit=True), "1", device="cpu", stream=True, out=tmp_path)
    assert results["fold1"]["test"] == pytest.approx(metrics["test"], abs=1e-6)
    assert results["fold1"]["best_epoch"] == metrics["best_epoch"]


class Interrupted(Exception):
    pass


def test_an_interrupted_refit_resumes_to_the_same_numbers(data, refitted, tmp_path):
    _, metrics = refitted
    fold = protocol_folds(_config(), data)[0]

    def stop_in_the_refit(name: str, epoch: int, total: int, row: dict) -> None:
        if name.endswith("refit") and epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_fold(_config(refit=True), data, fold, tmp_path, stop_in_the_refit, checkpoint_seconds=0)
    assert (tmp_path / files.SELECTION).is_file() and (tmp_path / files.REFIT_CHECKPOINT).is_file()
    assert not (tmp_path / files.METRICS).exists()
    assert "rerun the command" in files.why_untrained(tmp_path)
    resumed = train_fold(_config(refit=True), data, fold, tmp_path)
    assert resumed["test"] == metrics["test"] and resumed["test_before_refit"] == metrics["test_before_refit"]
    assert not any((tmp_path / name).exists() for name in files.RESUME_FILES)


def test_a_stacked_group_refuses_a_refit_member_and_the_sweep_trains_it_solo(workspace, data, refitted, tmp_path):
    _, metrics = refitted
    fold = protocol_folds(_config(), data)[0]
    [result] = train_group([MemberSpec(_config(refit=True), fold, tmp_path / "member")], data)
    assert isinstance(result.error, TrainingError) and "--refit" in str(result.error)

    grid = build_grid(None, {"head": ["shiftcnn"], "seed": ["0", "1"], **{k: [str(v)] for k, v in RECIPE.items()}},
                      [], ["1"])
    outcome = run_sweep(grid, SweepSettings(workdir=workspace.root, device="cpu", jobs=1, batch_runs="on", refit=True))
    assert (outcome.done, outcome.failed) == (2, 0)
    assert outcome.sweep_dir.name == "sweep-refit"
    assert files.read_json(outcome.sweep_dir / "sweep.json")["refit"] is True
    table = pd.read_csv(outcome.table_path)
    seed0 = outcome.sweep_dir / table.loc[table["seed"] == 0, "run_dir"].iloc[0]
    assert files.read_json(seed0 / files.METRICS)["test"] == metrics["test"]
    assert table["refit"].tolist() == [True, True]
    assert np.isfinite(table["ua"]).all()


def test_refit_with_a_teacher_is_refused_in_one_line(workspace):
    done = subprocess.run([sys.executable, "-m", "ser.cli", "train", "--teacher", "--text-model", "bert-base",
                           "--refit", "--workdir", str(workspace.root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --refit is not available with --teacher")


def test_ser_train_prints_the_score_before_the_refit_beside_the_refit_s(refitted, capsys):
    from ser.cli.train_cmd import print_results

    _, metrics = refitted
    print_results({"fold1": metrics, "fold2": metrics})
    printed = capsys.readouterr().out
    assert "test metrics of the head refitted on train + dev" in printed and "ua before refit" in printed
    row = next(line for line in printed.splitlines() if line.startswith("│ fold1"))
    before = f"{metrics['test_before_refit']['ua']:.4f}"
    assert f"{metrics['test']['ua']:.4f}" in row and row.rstrip(" │").endswith(before)
