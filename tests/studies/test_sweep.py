"""Sweeps with the real trainer on a real fbank cache of a small synthetic corpus."""

from pathlib import Path

import pandas as pd
import pytest

from ser.errors import UserInputError
from ser.studies.grid import Grid, build_grid
from ser.studies.sweep import SweepSettings, run_sweep


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    """manifests/synthetic.csv (4 speakers, 2 sessions, 4 clips per class) + cache/synthetic/fbank.h5."""
    return build_fbank_workspace(tmp_path_factory.mktemp("sweep-ws"), speakers=4, sessions=2, per_class=4)


def read_history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns=["seconds"])


def test_jobs_do_not_change_a_runs_numbers(workspace: Path, tmp_path: Path):
    grid = build_grid(None, {"head": ["shiftcnn"], "shift_proportion": ["1/2,1/8"], "epochs": ["2"]}, [], ["1"])
    serial = run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "serial", device="cpu", jobs=1))
    parallel = run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "parallel", device="cpu", jobs=2))
    assert (serial.done, parallel.done, serial.failed, parallel.failed) == (2, 2, 0, 0)
    assert parallel.jobs == 2
    one, two = pd.read_csv(serial.table_path), pd.read_csv(parallel.table_path)
    assert list(one["run_dir"]) == list(two["run_dir"])
    for run in one["run_dir"]:
        serial_history, parallel_history = (read_history(tmp_path / name / run) for name in ("serial", "parallel"))
        pd.testing.assert_frame_equal(serial_history, parallel_history)
        assert (tmp_path / "serial" / run / "metrics.json").read_text() == (
            tmp_path / "parallel" / run / "metrics.json").read_text()
    # the two proportions really are different runs (the comparison above is not vacuous)
    first, second = (read_history(tmp_path / "serial" / run) for run in one["run_dir"])
    assert not first["train_loss"].equals(second["train_loss"])


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(workspace: Path, tmp_path: Path):
    grid = Grid(
        ({"head": ("linear",), "seed": (0,), "epochs": (2,)},
         {"head": ("linear",), "seed": (0,), "epochs": (2,), "head_option.layers": ([5],)}),  # the cache has 1
        folds=("1",),
    )
    settings = SweepSettings(workdir=workspace, out=tmp_path / "sweep", device="cpu", jobs=1)
    outcome = run_sweep(grid, settings)
    assert (outcome.done, outcome.failed) == (1, 1)
    table = pd.read_csv(outcome.table_path)
    assert len(table) == 2
    failed = table[table["status"] == "failed"].iloc[0]
    assert "layer 5 does not exist" in failed["error"]
    assert (tmp_path / "sweep" / failed["run_dir"] / "error.txt").is_file()
    done = table[table["status"] == "done"].iloc[0]
    assert 0.0 <= done["ua"] <= 1.0
    finished_metrics = tmp_path / "sweep" / done["run_dir"] / "metrics.json"
    stamp = finished_metrics.stat().st_mtime_ns

    again = run_sweep(grid, settings)  # the finished run is skipped, the failed one is tried again
    assert (again.skipped, again.done, again.failed) == (1, 0, 1)
    assert finished_metrics.stat().st_mtime_ns == stamp
    summary = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")
    assert len(summary) == 1 and summary.loc[0, "n"] == 1
    assert summary.loc[0, "ua_mean"] == pytest.approx(done["ua"])
    assert summary.loc[0, "ua_pooled"] == pytest.approx(done["ua"])  # one fold: its utterances are the pool
    assert summary.loc[0, "ua_ci_low"] <= summary.loc[0, "ua_pooled"] <= summary.loc[0, "ua_ci_high"]


def test_a_grid_head_option_that_one_of_its_heads_does_not_take_is_refused_before_any_run(workspace: Path,
                                                                                         tmp_path: Path):
    """`head: [linear, cnn]` with `kernel_size: [3]` failed every linear run, one error.txt each."""
    grid = Grid(({"head": ("cnn", "linear"), "epochs": (1,), "head_option.kernel_size": (3,)},), folds=("1",))
    with pytest.raises(UserInputError, match="head 'linear' does not take option.s.: kernel_size"):
        run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "sweep", device="cpu", jobs=1))
    assert not list((tmp_path / "sweep").glob("*/fold1"))


def test_a_grid_seed_outside_numpys_range_is_refused_before_any_run(workspace: Path, tmp_path: Path):
    """`seed: [-1]` in a grid file failed every run with numpy's "Seed must be between 0 and 2**32 - 1"."""
    from ser.errors import UserInputError

    grid = Grid(({"head": ("linear",), "seed": (0, -1), "epochs": (1,)},), folds=("1",))
    with pytest.raises(UserInputError, match="seed -1 is outside 0–4294967295"):
        run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "sweep", device="cpu", jobs=1))
    assert not (tmp_path / "sweep").exists()
