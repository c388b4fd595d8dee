"""Experiment tracking (`--log tensorboard|mlflow`, off by default; extra `ser[tracking]`).

One tracker per run × fold records the run's configuration, every epoch's history row (losses,
dev metrics, learning rate; test metrics with --record-test-curve) and the final metrics.json numbers:
- `tensorboard`: event files in `<fold dir>/tensorboard/` (`tensorboard --logdir runs/`); tags
  `train/loss`, `dev/loss`, `dev/ua`, (`test/ua`), …, `lr`, and `final/test_ua`, …
- `mlflow`: one MLflow run named `<run>/<fold>` in the experiment `ser/<corpus>/<model>`, stored
  where `$MLFLOW_TRACKING_URI` says, else in `sqlite:///<dir holding the runs>/mlflow.db`.

Tracking never fails a run: a store that still refuses after a few tries (a locked or damaged
database, a server that is down) gets one warning on stderr and the run trains on untracked.
Nothing is written before the first record, so a fold refused because another process is
training it leaves neither an event file nor an MLflow run.

Any training loop can use it (`ser train`, `ser sweep`, fine-tuning):

    with open_tracker("tensorboard", fold_dir, run_name, experiment, config_dict) as tracker:
        metrics = train_fold(..., progress=tracker.progress(progress))
        tracker.log_final(metrics)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from ser.errors import OutputBusyError, UserInputError

TRACKERS = ("tensorboard", "mlflow")
TENSORBOARD_DIR = "tensorboard"
PARAM_CHARS = 500  # MLflow parameter values are short strings
STORE_ATTEMPTS = 3  # tries of each store access before tracking is given up for the run
RETRY_SECONDS = 0.5  # the wait before the second try, doubled before each further one

# (fold name, finished epoch (1-based), total epochs, history row): the training loop's progress hook
ProgressCallback = Callable[[str, int, int, dict], None]


def check_tracker(kind: str | None) -> str | None:
    """`None` (off) or a known tracker name; the CLI calls this at the edge."""
    if kind is not None and kind not in TRACKERS:
        raise UserInputError(f"unknown --log {kind!r}", "choose tensorboard or mlflow")
    return kind


def _numbers(row: dict) -> dict[str, float]:
    return {key: float(value) for key, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _final_numbers(metrics: dict) -> dict[str, float]:
    """metrics.json's numbers as `test_ua`, `dev_ua`, `test_last_ua`, …, `best_epoch`."""
    flat = {"best_epoch": float(metrics.get("best_epoch", 0))}
    for part in ("test", "dev", "test_last"):
        flat.update({f"{part}_{key}": value for key, value in _numbers(metrics.get(part) or {}).items()})
    return flat


def _tag(key: str) -> str:
    """History column → TensorBoard tag: train_loss → train/loss, dev_ua → dev/ua, lr → lr."""
    part, _, name = key.partition("_")
    return f"{part}/{name}" if part in ("train", "dev", "test") and name else key


class Tracker:
    """The tracker interface; this base class records nothing (tracking off)."""

    def log_config(self, config: dict) -> None:
        pass

    def log_epoch(self, epoch: int, row: dict) -> None:
        pass

    def log_final(self, metrics: dict) -> None:
        pass

    def close(self, failed: bool = False) -> None:
        pass

    def progress(self, forward: ProgressCallback | None = None) -> ProgressCallback | None:
        """A progress callback for the training loop that logs each epoch's row, then calls `forward`."""
        if type(self) is Tracker:
            return forward

        def on_epoch(fold: str, epoch: int, total: int, row: dict) -> None:
            self.log_epoch(epoch, row)
            if forward is not None:
                forward(fold, epoch, total, row)

        return on_epoch

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, error_type, *exc) -> None:
        if error_type is not None and issubclass(error_type, OutputBusyError):
            return  # another process is training this fold: the attempt was never a run
        self.close(failed=error_type is not None)


class TensorBoardTracker(Tracker):
    """The event file is opened at the first epoch (with the config), so a fold refused before it
    trains (another process holds it) leaves no file in that fold's directory."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserInputError("--log tensorboard needs the tensorboard package",
                                 "pip install 'ser[tracking]'") from None
        self.open_writer = lambda: SummaryWriter(log_dir=str(log_dir))
        self.writer, self.config_text = None, None

    def _writer(self):
        if self.writer is None:
            self.writer = self.open_writer()
            if self.config_text is not None:
                self.writer.add_text("config", self.config_text)
        return self.writer

    def log_config(self, config: dict) -> None:
        self.config_text = "```\n" + json.dumps(config, indent=1, default=str) + "\n```"

    def log_epoch(self, epoch: int, row: dict) -> None:
        writer = self._writer()
        for key, value in _numbers(row).items():
            if key != "epoch":
                writer.add_scalar(_tag(key), value, epoch)
        writer.flush()

    def log_final(self, metrics: dict) -> None:
        writer = self._writer()
        step = int(metrics.get("best_epoch", 0))
        for key, value in _final_numbers(metrics).items():
            writer.add_scalar(f"final/{key}", value, step)
        writer.flush()

    def close(self, failed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()


def store_lock_path(uri: str, store_dir: Path) -> Path:
    """The lock file that serialises access to an MLflow store across processes: beside the sqlite
    file (or file store) the URI names, so two sweeps with different --out that share one
    $MLFLOW_TRACKING_URI take the same lock; `<store_dir>/mlflow.lock` for a server."""
    if uri.startswith("sqlite:///"):
        target = Path(uri[len("sqlite:///"):].partition("?")[0])  # sqlite:////abs.db → /abs.db
    elif uri.startswith("file:"):
        target = Path(uri[len("file:"):].removeprefix("//"))  # file:///abs, file:/abs
    elif "://" not in uri:  # a plain directory: MLflow's file store
        target = Path(uri)
    else:
        return store_dir / "mlflow.lock"
    return target.with_name(target.name + ".lock")


class MlflowTracker(Tracker):
    """One MLflow run, created with the first thing it records (an epoch, the final metrics, or a
    failure), so a fold refused before it trains (another process holds it) leaves no run in the
    store. Processes that share a store (a sweep's workers, two sweeps) take turns: every
    access holds an exclusive lock on the file beside the store (`store_lock_path`), since creating
    the sqlite tables concurrently fails ("duplicate column" in a schema migration). An access that
    still fails after STORE_ATTEMPTS tries turns tracking off for the run with one warning."""

    def __init__(self, store_dir: Path, run_name: str, experiment: str):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserInputError("--log mlflow needs the mlflow-skinny package", "pip install 'ser[tracking]'") from None
        self.store_dir = store_dir
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_dir.resolve() / 'mlflow.db'}"
        self.lock_path, self.run_name, self.experiment = store_lock_path(self.uri, store_dir), run_name, experiment
        self.client_class, self.run_id, self.params, self.gave_up = MlflowClient, None, [], False

    def _run(self) -> str | None:
        """The run's id, the run created (with its configuration) at the first call; None once
        tracking has given up."""
        if self.run_id is None and not self.gave_up:
            def start() -> None:
                self.store_dir.mkdir(parents=True, exist_ok=True)
                self.client = self.client_class(tracking_uri=self.uri)
                found = self.client.get_experiment_by_name(self.experiment)
                experiment_id = found.experiment_id if found is not None else self.client.create_experiment(self.experiment)
                self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id

            self._access("open the run", start)
            if self.params:
                self._access("log the configuration", lambda: self.client.log_batch(self.run_id, params=self.params))
        return self.run_id

    @contextlib.contextmanager
    def _locked(self):
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _access(self, what: str, action: Callable[[], None]) -> None:
        """`action` under the store's lock, retried; after the last failure, a warning and no more tracking."""
        if self.gave_up:
            return
        for attempt in range(STORE_ATTEMPTS):
            try:
                with self._locked():
                    action()
                return
            except Exception as error:  # noqa: BLE001 — tracking must not fail the training it records
                if attempt + 1 == STORE_ATTEMPTS:
                    self.gave_up = True
                    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                    print(f"warning: MLflow tracking of {self.run_name} stopped (could not {what}: {first_line}); "
                          "training goes on untracked", file=sys.stderr)
                    return
                time.sleep(RETRY_SECONDS * 2 ** attempt)

    def log_config(self, config: dict) -> None:
        from mlflow.entities import Param

        self.params = [Param(key, (value if isinstance(value, str) else json.dumps(value, default=str))[:PARAM_CHARS])
                       for key, value in config.items()]

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(1000 * time.time())
        metrics = [Metric(key, value, stamp, step) for key, value in values.items()]
        if self._run() is not None:
            self._access("log metrics", lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def log_epoch(self, epoch: int, row: dict) -> None:
        self._log({key: value for key, value in _numbers(row).items() if key != "epoch"}, epoch)

    def log_final(self, metrics: dict) -> None:
        self._log({f"final_{key}": value for key, value in _final_numbers(metrics).items()},
                  int(metrics.get("best_epoch", 0)))

    def close(self, failed: bool = False) -> None:
        status = "FAILED" if failed else "FINISHED"
        if self._run() is not None:
            self._access("close the run", lambda: self.client.set_terminated(self.run_id, status=status))


def open_tracker(kind: str | None, fold_dir: Path, run_name: str, experiment: str,
                 config: dict | None = None) -> Tracker:
    """The tracker for one run × fold (`kind` None: a tracker that records nothing).

    TensorBoard writes into `<fold_dir>/tensorboard/`; MLflow into the store beside the run
    directories (two levels above `fold_dir`) unless $MLFLOW_TRACKING_URI names one."""
    fold_dir = Path(fold_dir)
    if check_tracker(kind) is None:
        return Tracker()
    if kind == "tensorboard":
        tracker: Tracker = TensorBoardTracker(fold_dir / TENSORBOARD_DIR)
    else:
        tracker = MlflowTracker(fold_dir.parent.parent, run_name, experiment)
    if config is not None:
        tracker.log_config(config)
    return tracker
