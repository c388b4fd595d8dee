"""Folds trained side by side in forked worker processes: results, progress, failures, deaths."""

import os
from pathlib import Path

import pytest

from ser.data.fold import Fold
from ser.errors import DivergedError, TrainingError
from ser.training.fold_workers import train_folds_side_by_side

FOLDS = [(index, Fold(f"session{index + 1}", [], [], [])) for index in range(4)]


def recording_trainer(out: Path, fail: dict[str, str]):
    """A train_one that reports two epochs, leaves a file per finished fold, and fails as `fail` says."""

    def train_one(index, fold, progress):
        for epoch in (1, 2):
            progress(fold.name, epoch, 2, {"pid": os.getpid()})
        if fail.get(fold.name) == "diverge":
            raise DivergedError("loss is nan at epoch 2")
        if fail.get(fold.name) == "bug":
            raise ZeroDivisionError("division by zero")
        if fail.get(fold.name) == "die":
            os._exit(3)
        (out / fold.name).write_text(str(os.getpid()))
        return f"fold{index + 1}", {"ua": index / 10}

    return train_one


def test_folds_come_back_in_order_from_several_processes_with_their_progress(tmp_path):
    events = []
    results = train_folds_side_by_side(FOLDS, recording_trainer(tmp_path, {}), 2, lambda *event: events.append(event))
    assert list(results) == ["fold1", "fold2", "fold3", "fold4"] and results["fold3"] == {"ua": 0.2}
    workers = {int((tmp_path / f"session{i}").read_text()) for i in range(1, 5)}
    assert len(workers) == 2 and os.getpid() not in workers
    for _, fold in FOLDS:
        assert [epoch for name, epoch, _, _ in events if name == fold.name] == [1, 2]


@pytest.mark.parametrize("failure, error, message", [
    ("diverge", DivergedError, "fold session2: loss is nan"),
    ("bug", TrainingError, "fold session2: ZeroDivisionError"),
    ("die", TrainingError, "the worker training fold session2 died"),
])  # fmt: skip
def test_a_failing_fold_does_not_stop_the_folds_of_other_workers(tmp_path, failure, error, message):
    with pytest.raises(error, match=message):
        train_folds_side_by_side(FOLDS, recording_trainer(tmp_path, {"session2": failure}), 2)
    assert (tmp_path / "session1").exists() and (tmp_path / "session3").exists()  # the other worker's folds
    assert not (tmp_path / "session2").exists()
    if failure != "die":  # a worker goes on with its next fold after a failed one
        assert (tmp_path / "session4").exists()
