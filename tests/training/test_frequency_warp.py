"""`--frequency-warp A`: each training utterance's mel channels resampled at c·a, a drawn per
utterance and epoch from [1 − A, 1 + A], seeded; only on log-mel caches; in training only, resumed
with the same draws, and trained solo by a sweep. Real synthetic audio and real fbank/mfcc caches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ser.data.workspace import Workspace
from ser.errors import UserInputError
from ser.studies.grid import build_grid
from ser.studies.sweep import SweepSettings, run_sweep
from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.training.frequency_warp import FrequencyWarp, warped_channels
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.protocol import protocol_folds
from ser.training.run import run_training

RECIPE = {"epochs": 4, "batch_size": 8, "lr": 3e-3}


def test_channels_are_read_at_c_times_the_factor_and_padding_stays_zero():
    ramp = torch.arange(10, dtype=torch.float32).expand(3, 2, 5, 10).clone()  # (B, L, T, D): channel c holds c
    ramp[:, :, 4] = 0  # a padded frame
    warped = warped_channels(ramp, torch.tensor([1.0, 0.5, 1.2]))
    assert torch.equal(warped[0], ramp[0])  # factor 1: unchanged
    assert torch.allclose(warped[1, :, :4], 0.5 * torch.arange(10.0))  # read at c/2, between neighbours
    assert torch.allclose(warped[2, :, :4], (1.2 * torch.arange(10.0)).clamp(max=9))  # the top channel beyond the edge
    assert float(warped[:, :, 4].abs().max()) == 0.0


def test_an_epoch_draws_one_factor_per_row_in_range_and_the_same_again():
    first = FrequencyWarp.for_epoch(0.1, seed=3, epoch=2, rows=500).factors
    assert float(first.min()) >= 0.9 and float(first.max()) <= 1.1 and float(first.std()) > 0.05
    assert torch.equal(first, FrequencyWarp.for_epoch(0.1, seed=3, epoch=2, rows=500).factors)
    assert not torch.equal(first, FrequencyWarp.for_epoch(0.1, seed=3, epoch=3, rows=500).factors)
    assert not torch.equal(first, FrequencyWarp.for_epoch(0.1, seed=4, epoch=2, rows=500).factors)


@pytest.fixture(scope="module")
def workspace(build_fbank_workspace, tmp_path_factory) -> Workspace:
    """4 speakers in 2 sessions, 3 clips per class: 48 utterances, with an fbank and an mfcc cache."""
    root = build_fbank_workspace(tmp_path_factory.mktemp("warp"), speakers=4, sessions=2, per_class=3)
    return Workspace(build_fbank_workspace(root, speakers=4, sessions=2, per_class=3, model="mfcc"))


@pytest.fixture(scope="module")
def data(workspace):
    return load_training_data(workspace.manifest_for("synthetic"), workspace.cache_path("synthetic", "fbank"),
                              device="cpu")


def _config(**options) -> TrainConfig:
    return TrainConfig.create("shiftcnn", **RECIPE, model="fbank", corpus="synthetic", **options)


def test_a_warped_run_trains_on_warped_frames_only_and_repeats_itself(data, tmp_path):
    fold = protocol_folds(_config(), data)[0]
    train_fold(_config(), data, fold, tmp_path / "plain")
    warped = train_fold(_config(frequency_warp=0.1), data, fold, tmp_path / "warped")
    again = train_fold(_config(frequency_warp=0.1), data, fold, tmp_path / "again")
    assert warped == again
    history = [pd.read_csv(tmp_path / name / files.HISTORY) for name in ("plain", "warped")]
    assert not np.allclose(history[0]["train_loss"], history[1]["train_loss"])
    assert files.read_json(tmp_path / "warped" / files.CONFIG)["frequency_warp"] == 0.1
    assert "frequency_warp" not in files.read_json(tmp_path / "plain" / files.CONFIG)  # as configs were before
    assert _config(frequency_warp=0.1).run_name().endswith("-fw0.1-s0")
    probabilities = [pd.read_csv(tmp_path / name / files.PREDICTIONS).filter(regex="^p_").to_numpy()
                     for name in ("plain", "warped")]
    assert probabilities[0].shape == (len(fold.test), 4) and not np.allclose(*probabilities, atol=1e-3)


class Interrupted(Exception):
    pass


def test_an_interrupted_warped_run_resumes_with_the_same_draws(data, tmp_path):
    fold = protocol_folds(_config(), data)[0]
    whole = train_fold(_config(frequency_warp=0.1), data, fold, tmp_path / "whole")

    def stop(name: str, epoch: int, total: int, row: dict) -> None:
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_fold(_config(frequency_warp=0.1), data, fold, tmp_path / "resumed", stop, checkpoint_seconds=0)
    assert train_fold(_config(frequency_warp=0.1), data, fold, tmp_path / "resumed") == whole


def test_a_cache_without_mel_channels_or_a_warp_out_of_range_is_refused_in_one_line(workspace, tmp_path):
    mfcc = _config(frequency_warp=0.1)
    with pytest.raises(UserInputError, match=r"--frequency-warp needs log-mel frames \(an fbank cache\)") as refused:
        run_training(workspace.root, mfcc, "1", model="mfcc", device="cpu", out=tmp_path / "mfcc")
    assert "ser:mfcc" in refused.value.message and not (tmp_path / "mfcc" / "fold1").exists()
    with pytest.raises(UserInputError, match=r"--frequency-warp 0.7 is outside \[0, 0.5\)"):
        run_training(workspace.root, _config(frequency_warp=0.7), "1", model="fbank", device="cpu",
                     out=tmp_path / "wide")


def test_a_warped_sweep_trains_solo_what_ser_train_trains(workspace, tmp_path):
    grid = build_grid(None, {"head": ["shiftcnn"], "seed": ["0", "1"], **{k: [str(v)] for k, v in RECIPE.items()}},
                      [], ["1"])
    outcome = run_sweep(grid, SweepSettings(workdir=workspace.root, model="fbank", device="cpu", jobs=1,
                                            batch_runs="on", frequency_warp=0.1))
    assert (outcome.done, outcome.failed) == (2, 0)
    assert outcome.sweep_dir.name == "sweep-fw0.1"
    table = pd.read_csv(outcome.table_path)
    assert table["frequency_warp"].tolist() == [0.1, 0.1]
    seed0 = outcome.sweep_dir / table.loc[table["seed"] == 0, "run_dir"].iloc[0]
    _, trained = run_training(workspace.root, _config(frequency_warp=0.1), "1", model="fbank", device="cpu",
                              out=tmp_path / "train")
    assert files.read_json(seed0 / files.METRICS)["test"] == trained["fold1"]["test"]


def test_dev_and_test_see_the_frames_as_cached(data, tmp_path):
    """The kept weights, scored again on dev without any warp, give the run's dev score."""
    from ser.training.loop import predict

    fold = protocol_folds(_config(), data)[0]
    metrics = train_fold(_config(frequency_warp=0.3), data, fold, tmp_path)
    head = files.load_model(tmp_path / files.MODEL)
    saved = files.load_torch(tmp_path / files.MODEL)["feature_scaler"]
    scaler = type(data.feature_scaler(data.positions(fold.train)))(saved["mean"], saved["std"])
    dev_rows = data.positions(fold.dev)
    outputs = predict(head, data, dev_rows, 16, scaler)
    truth = data.targets[torch.from_numpy(dev_rows)].numpy()
    assert data.task.evaluate(outputs, truth)["ua"] == pytest.approx(metrics["dev"]["ua"], abs=1e-12)
