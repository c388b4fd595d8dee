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


@pytest.mark.parametrize("batch_runs, log", [("off", None), ("on", None), ("off", "tensorboard")])
def test_a_sweep_fails_only_the_run_in_training_elsewhere_and_leaves_its_directory_alone(
        workspace, tmp_path, held_by_another_process, capsys, batch_runs, log):
    if log:
        pytest.importorskip("tensorboard", reason="needs the tracking extra: pip install 'ser[tracking]'")
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
    assert not (out / busy / "fold1").exists()  # neither error.txt nor an event file lands in another process's fold
    table = pd.read_csv(outcome.table_path).set_index("run_dir")
    assert table.loc[f"{busy}/fold1", "status"] == "pending"  # the other process may yet finish it
    assert (table["status"] == "done").sum() == 1
    if log:  # the run that trained has its events
        assert list((out / table.index[table["status"] == "done"][0] / "tensorboard").iterdir())
