"""One process per fold directory: a fold that another process is training is refused at once,
naming that process, by training and by a sweep (solo and stacked) alike; nothing of the refused
attempt lands in the other process's directory (real processes, real fbank cache of a small
synthetic corpus). Fine-tuning: tests/finetune/test_finetune.py; `ser train`: tests/cli/test_train_cli.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ser.errors import OutputBusyError
from ser.studies.grid import Grid
from ser.studies.sweep import SweepSettings, run_sweep, train_config
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.protocol import protocol_folds, select_folds
from ser.training.run import train_folds

@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    return build_fbank_workspace(tmp_path_factory.mktemp("fold-lock-ws"), speakers=4, sessions=2, per_class=3)


def linear(lr: float = 1e-3) -> TrainConfig:
    return TrainConfig.create("linear", {}, epochs=2, batch_size=8, lr=lr, seed=0)


def mlflow_runs(store: str) -> dict[str, str]:
    """{run name: status} of every run in the MLflow store at `store`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    return {run.info.run_name: run.info.status
            for run in client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])}


def test_training_a_fold_another_process_holds_is_refused_and_writes_nothing(workspace, tmp_path,
                                                                            held_by_another_process):
    data = load_training_data(workspace / "manifests" / "synthetic.csv",
                              workspace / "cache" / "synthetic" / "fbank.h5", device="cpu")
    run = tmp_path / "run"
    pid = held_by_another_process(run / "fold1").pid
    with pytest.raises(OutputBusyError, match=f"{run / 'fold1'} is being written by process {pid} "):
        train_folds(linear(), data, run, "1")
    assert not (run / "fold1").exists()  # no config.json, checkpoint or error.txt in the holder's fold
    fold2 = select_folds(protocol_folds(linear(), data), "2")
    assert fold2 and train_folds(linear(), data, run, "2")["fold2"]["test"]["ua"] >= 0  # other folds train


def test_a_refused_fold_leaves_no_mlflow_run(workspace, tmp_path, monkeypatch, held_by_another_process):
    pytest.importorskip("mlflow", reason="needs the tracking extra: pip install 'ser[tracking]'")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    data = load_training_data(workspace / "manifests" / "synthetic.csv",
                              workspace / "cache" / "synthetic" / "fbank.h5", device="cpu")
    run = tmp_path / "run"
    held_by_another_process(run / "fold1")
    with pytest.raises(OutputBusyError):
        train_folds(linear(), data, run, "1", log="mlflow")
    assert train_folds(linear(), data, run, "2", log="mlflow")["fold2"]["test"]["ua"] >= 0
    assert mlflow_runs(store) == {"run/fold2": "FINISHED"}  # the refused attempt was not recorded as a failed run


@pytest.mark.parametrize("batch_runs, log", [("off", None), ("on", None), ("off", "tensorboard"), ("on", "mlflow")])
def test_a_sweep_fails_only_the_run_in_training_elsewhere_and_leaves_its_directory_alone(
        workspace, tmp_path, held_by_another_process, capsys, monkeypatch, batch_runs, log):
    if log:
        pytest.importorskip("tensorboard" if log == "tensorboard" else "mlflow",
                            reason="needs the tracking extra: pip install 'ser[tracking]'")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    grid = Grid(({"head": ("linear",), "seed": (0, 1), "epochs": (2,), "lr": (1e-3,)},), folds=("1",))
    out = tmp_path / "sweep"
    settings = SweepSettings(workdir=workspace, out=out, device="cpu", jobs=1, batch_runs=batch_runs, log=log)
    busy = train_config(grid.points()[0], settings, "synthetic", "fbank", None).run_name()
    pid = held_by_another_process(out / busy / "fold1").pid
    outcome = run_sweep(grid, settings)
    assert (outcome.done, outcome.failed) == (1, 1)
    printed = capsys.readouterr().err
    assert f"FAILED {busy}/fold1: {out / busy / 'fold1'} is being written by process {pid} " in printed
    assert ("as 1 stacked model(s) of K = 2" in printed) == (batch_runs == "on")  # the stacked path was taken
    assert not (out / busy / "fold1").exists()  # neither error.txt nor a tracker's files land in another process's fold
    table = pd.read_csv(outcome.table_path).set_index("run_dir")
    assert table.loc[f"{busy}/fold1", "status"] == "pending"  # the other process may yet finish it
    assert (table["status"] == "done").sum() == 1
    trained = table.index[table["status"] == "done"][0]
    if log == "tensorboard":  # the run that trained has its events
        assert list((out / trained / "tensorboard").iterdir())
    if log == "mlflow":  # … and its MLflow run, the refused one has none
        assert mlflow_runs(store) == {trained: "FINISHED"}


@pytest.mark.parametrize("batch_runs", ["off", "on"])
def test_a_sweep_removes_nothing_from_a_fold_another_process_holds(workspace, tmp_path, held_by_another_process,
                                                                  batch_runs):
    """A run clears its fold's old error.txt only once it holds the fold: the one there belongs to
    whoever holds it (here: an earlier `ser train` of the fold that failed)."""
    grid = Grid(({"head": ("linear",), "seed": (0, 1), "epochs": (2,), "lr": (1e-3,)},), folds=("1",))
    out = tmp_path / "sweep"
    settings = SweepSettings(workdir=workspace, out=out, device="cpu", jobs=1, batch_runs=batch_runs)
    busy = train_config(grid.points()[0], settings, "synthetic", "fbank", None).run_name()
    held_by_another_process(out / busy / "fold1")
    holders_error = out / busy / "fold1" / "error.txt"
    holders_error.parent.mkdir(parents=True)
    holders_error.write_text("the holder's\n")
    assert (run_sweep(grid, settings).done, holders_error.read_text()) == (1, "the holder's\n")


SECOND_SWEEP = """
import sys, time
from pathlib import Path
from ser.features.output_lock import exclusive_output
from ser.studies.grid import Grid
from ser.studies.sweep import SweepSettings, run_sweep
workspace, out, fold = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
with exclusive_output(fold, directory=True):  # as a second sweep in training there would
    print("held", flush=True)
    while not (out / "sweep.csv").exists():  # the first sweep has planned its runs, refused this one and goes on
        time.sleep(0.01)
    time.sleep(0.5)
    grid = Grid(({"head": ("linear",), "seed": (0,), "epochs": (2,), "lr": (1e-3,)},), folds=("1",))
    assert run_sweep(grid, SweepSettings(workdir=workspace, out=out, device="cpu", jobs=1)).done == 1
"""


def test_a_run_that_another_sweep_finishes_meanwhile_is_done_in_the_final_table(workspace, tmp_path):
    """Two sweeps on one folder share its runs: the final sweep.csv reads every run's state from
    its folder, so a run the other sweep finished is not left pending."""
    import subprocess
    import sys

    out = tmp_path / "sweep"
    grid = Grid(({"head": ("linear",), "seed": (0,), "epochs": (2, 1500), "lr": (1e-3,)},), folds=("1",))
    settings = SweepSettings(workdir=workspace, out=out, device="cpu", jobs=1, batch_runs="off")
    busy, slow = (train_config(point, settings, "synthetic", "fbank", None).run_name() for point in grid.points())
    other = subprocess.Popen([sys.executable, "-c", SECOND_SWEEP, str(workspace), str(out), str(out / busy / "fold1")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        outcome = run_sweep(grid, settings)
        assert other.wait(timeout=120) == 0
    finally:
        other.kill()
    assert (outcome.done, outcome.failed) == (1, 1)  # this sweep trained the slow run, the other one the busy run
    table = pd.read_csv(outcome.table_path).set_index("run_dir")
    assert table.loc[f"{busy}/fold1", "status"] == "done" and table.loc[f"{slow}/fold1", "status"] == "done"
