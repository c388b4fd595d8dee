"""Experiment tracking (--log tensorboard) and the Optuna search (--search optuna) on a real fbank
cache of a small synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.training.run import run_training


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    return build_fbank_workspace(tmp_path_factory.mktemp("bridges-ws"), speakers=4, sessions=2, per_class=3)


def scalars(log_dir: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def test_tensorboard_events_hold_every_epoch_and_the_final_metrics(workspace, tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tracking extra: pip install 'ser[tracking]'")
    config = TrainConfig.create("linear", epochs=3, batch_size=8, standardize=True)
    run_dir, results = run_training(workspace, config, "1", out=tmp_path / "run", device="cpu", log="tensorboard")
    fold_dir = run_dir / "fold1"
    logged = scalars(fold_dir / "tensorboard")
    history = pd.read_csv(fold_dir / files.HISTORY)
    assert [event.step for event in logged["train/loss"]] == [1, 2, 3]
    assert [event.value for event in logged["train/loss"]] == pytest.approx(history["train_loss"].tolist(), rel=1e-6)
    assert [event.value for event in logged["dev/ua"]] == pytest.approx(history["dev_ua"].tolist(), rel=1e-6)
    (final,) = logged["final/test_ua"]
    assert final.value == pytest.approx(results["fold1"]["test"]["ua"]) and final.step == results["fold1"]["best_epoch"]
    assert {"dev/loss", "lr", "final/dev_ua", "final/test_last_ua"} <= set(logged)
    assert "test/ua" not in logged  # test is scored per epoch only with --record-test-curve


def test_mlflow_run_holds_the_config_every_epoch_and_the_final_metrics(workspace, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="needs the tracking extra: pip install 'ser[tracking]'")
    from mlflow.tracking import MlflowClient

    store = f"file:{tmp_path / 'mlruns'}"  # the file store: quick to create (the default is sqlite beside the runs)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    config = TrainConfig.create("linear", epochs=2, batch_size=8, standardize=True)
    run_dir, results = run_training(workspace, config, "2", out=tmp_path / "run", device="cpu", log="mlflow")
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("ser/synthetic/fbank").experiment_id])
    assert run.info.run_name == "run/fold2" and run.info.status == "FINISHED"
    assert run.data.params["head"] == "linear" and run.data.params["epochs"] == "2"
    history = pd.read_csv(run_dir / "fold2" / files.HISTORY)
    logged = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(history["train_loss"].tolist())
    assert run.data.metrics["final_test_ua"] == pytest.approx(results["fold2"]["test"]["ua"])


def test_optuna_search_samples_ranges_selects_on_dev_and_records_a_sweep(workspace, tmp_path):
    pytest.importorskip("optuna", reason="needs the search extra: pip install 'ser[search]'")
    from ser.studies.search import run_search
    from ser.studies.sweep import SweepSettings

    settings = SweepSettings(workdir=workspace, out=tmp_path / "search", device="cpu", log="tensorboard")
    axes = {"head": ["linear"], "lr": ["1e-4:1e-2"], "epochs": ["2"], "batch_size": ["4,8"]}
    outcome = run_search(axes, [], ["1"], settings, trials=3, seed=0)
    table = pd.read_csv(outcome.table_path)
    assert len(table) == 3 and (table["status"] == "done").all()
    trials = pd.read_csv(tmp_path / "search" / "search.csv")
    assert len(trials) == 3 and trials["lr"].between(1e-4, 1e-2).all() and trials["lr"].nunique() == 3
    assert set(trials["batch_size"]) <= {4, 8}
    dev = [files.read_json(tmp_path / "search" / run / "metrics.json")["dev"]["ua"] for run in table["run_dir"]]
    assert sorted(trials["dev_ua"]) == pytest.approx(sorted(dev))  # the objective is the dev score, not test
    assert outcome.best["dev_ua"] == pytest.approx(max(dev))
    assert all(scalars(tmp_path / "search" / run / "tensorboard")["final/test_ua"] for run in table["run_dir"])

    stamps = [(tmp_path / "search" / run / "metrics.json").stat().st_mtime_ns for run in table["run_dir"]]
    again = run_search(axes, [], ["1"], settings, trials=3, seed=0)  # the seeded sampler replays: nothing retrains
    assert again.trials["lr"].tolist() == trials["lr"].tolist()
    assert [(tmp_path / "search" / run / "metrics.json").stat().st_mtime_ns for run in table["run_dir"]] == stamps


def test_an_optuna_search_with_refit_refits_every_trial_and_still_selects_on_dev(workspace, tmp_path):
    pytest.importorskip("optuna", reason="needs the search extra: pip install 'ser[search]'")
    from ser.studies.search import run_search
    from ser.studies.sweep import SweepSettings

    settings = SweepSettings(workdir=workspace, out=tmp_path / "search", device="cpu", refit=True)
    axes = {"head": ["linear"], "lr": ["1e-3:1e-2"], "epochs": ["3"], "batch_size": ["8"]}
    outcome = run_search(axes, [], ["1"], settings, trials=2, seed=0)
    table = pd.read_csv(outcome.table_path)
    assert len(table) == 2 and (table["status"] == "done").all()
    metrics = [files.read_json(tmp_path / "search" / run / "metrics.json") for run in table["run_dir"]]
    assert all(m["refit"]["epochs"] == m["best_epoch"] for m in metrics)  # each trial refitted for dev's epochs
    assert all(m["test"] != m["test_before_refit"] for m in metrics)  # and scored the refitted head on test
    trials = pd.read_csv(tmp_path / "search" / "search.csv")
    assert sorted(trials["dev_ua"]) == pytest.approx(sorted(m["dev"]["ua"] for m in metrics))  # dev, never test


def test_options_are_checked_at_the_command_line(workspace):
    from typer.testing import CliRunner

    from ser.cli import app

    runner, where = CliRunner(), ["--workdir", str(workspace)]
    ranged = runner.invoke(app, ["sweep", *where, "--head", "linear", "--lr", "1e-5:1e-2"], env={"COLUMNS": "200"})
    assert ranged.exit_code == 2 and "low:high ranges need --search optuna" in ranged.output
    trials = runner.invoke(app, ["sweep", *where, "--head", "linear", "--trials", "3"], env={"COLUMNS": "200"})
    assert trials.exit_code == 2 and "--trials needs --search optuna" in trials.output
    tracker = runner.invoke(app, ["train", *where, "--head", "linear", "--log", "wandb"], env={"COLUMNS": "200"})
    assert tracker.exit_code == 2 and "choose tensorboard or mlflow" in tracker.output


def test_ranges_are_read_with_their_scale_and_bad_ones_refused():
    from ser.errors import UserInputError
    from ser.studies.search import Range, split_ranges

    values, ranges = split_ranges({"head": ["cnn,linear"], "lr": ["1e-5:1e-2"], "epochs": ["10:50"], "seed": ["0"]})
    assert values == {"head": ["cnn,linear"], "seed": ["0"]}
    assert ranges == {"lr": Range(1e-5, 1e-2, integer=False, log=True), "epochs": Range(10, 50, integer=True)}
    for bad, message in (({"head": ["a:b"]}, "takes values, not a range"), ({"lr": ["1e-2:1e-5"]}, "is empty"),
                         ({"lr": ["0:1"]}, "must be positive"), ({"epochs": ["5:9,12"]}, "mixes a range")):
        with pytest.raises(UserInputError, match=message):
            split_ranges(bad)


TRACKED_RUN = """
import sys, time
from pathlib import Path
from ser.training.tracking import open_tracker
out, start = Path(sys.argv[1]), float(sys.argv[2])
while time.time() < start:  # both processes open their run at the same moment, as two sweeps' first folds
    time.sleep(0.001)
with open_tracker("mlflow", out / "run" / "fold1", out.name + "/fold1", "ser/synthetic/fbank", {"head": "linear"}) as t:
    t.log_epoch(1, {"train_loss": 1.0, "dev_ua": 0.5})
    t.log_final({"test": {"ua": 0.5}, "best_epoch": 1})
"""


def test_two_processes_logging_to_one_fresh_sqlite_store_both_finish(tmp_path):
    """Two sweeps (different --out) sharing one $MLFLOW_TRACKING_URI: creating the fresh sqlite
    store's tables at once failed ("duplicate column name") and the run was discarded as FAILED.
    The lock now sits beside the sqlite file, so both take turns."""
    pytest.importorskip("mlflow", reason="needs the tracking extra: pip install 'ser[tracking]'")
    import os
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    (tmp_path / "shared").mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "MLFLOW_TRACKING_URI": store}
    start = str(time.time() + 5)  # after both interpreters have imported mlflow
    processes = [subprocess.Popen([sys.executable, "-c", TRACKED_RUN, str(tmp_path / name), start], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0 and "warning" not in stderr, stderr[-1500:]
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("ser/synthetic/fbank").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["a/fold1", "b/fold1"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert all(run.data.metrics["final_test_ua"] == 0.5 for run in runs)


def test_a_store_that_keeps_failing_warns_and_the_run_still_trains(workspace, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="needs the tracking extra: pip install 'ser[tracking]'")
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not an sqlite database" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{damaged}")
    monkeypatch.setattr("ser.training.tracking.RETRY_SECONDS", 0.01)
    config = TrainConfig.create("linear", epochs=1, batch_size=8, standardize=True)
    run_dir, results = run_training(workspace, config, "2", out=tmp_path / "run", device="cpu", log="mlflow")
    assert (run_dir / "fold2" / files.METRICS).exists() and results["fold2"]["test"]["ua"] >= 0
    warning = capsys.readouterr().err
    assert "MLflow tracking of run/fold2 stopped" in warning and "training goes on untracked" in warning
