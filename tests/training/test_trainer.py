"""The trainer on a real fbank cache of the synthetic corpus, with the real heads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from ser.data.workspace import Workspace
from ser.errors import TrainingError, UserInputError
from ser.training import loop
from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.protocol import protocol_folds, select_folds
from ser.training.run import train_folds


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace):
    return Workspace(build_fbank_workspace(tmp_path_factory.mktemp("ws"), speakers=4, sessions=2, per_class=3))


@pytest.fixture(scope="module")
def data(workspace):
    return load_training_data(workspace.manifest_for("synthetic"), workspace.cache_path("synthetic", "fbank"), device="cpu")


def small_config(**changes) -> TrainConfig:
    options = dict(epochs=3, batch_size=8, lr=1e-3, warmup_epochs=1, seed=0, standardize=True)
    options.update(changes)
    return TrainConfig.create("shiftcnn", {"shift_proportion": "1/8"}, **options)


def test_config_round_trips_and_names_the_run():
    config = small_config(layers=[0])
    assert TrainConfig.from_dict(config.to_dict()) == config
    flat = config.to_dict()
    assert flat["epochs"] == 3 and flat["head_kwargs"] == {"shift_proportion": "1/8"}
    assert config.run_name() == "shiftcnn-p1_8-e3-bs8-lr0.001-L0-std-s0"
    assert TrainConfig.create("shiftcnn").run_name() == "shiftcnn-s0"


def test_train_fold_writes_the_run_directory(data, tmp_path):
    fold = protocol_folds(small_config(), data)[0]
    metrics = train_fold(small_config(), data, fold, tmp_path)
    for name in (files.CONFIG, files.METRICS, files.HISTORY, files.PREDICTIONS, files.LAYER_WEIGHTS, files.MODEL):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / files.CHECKPOINT).exists()
    assert set(metrics) == {"test", "dev", "best_epoch", "test_last", "calibration"}  # the optimistic number is opt-in
    assert set(metrics["test"]) == {"ua", "wa", "macro_f1", "confusion", "labels"}
    assert np.sum(metrics["test"]["confusion"]) == len(fold.test)

    history = pd.read_csv(tmp_path / files.HISTORY)
    assert list(history.columns) == ["epoch", "train_loss", "dev_loss", "dev_ua", "dev_wa", "lr", "seconds"]  # no test
    assert list(history["epoch"]) == [1, 2, 3]
    best = history[history["epoch"] == metrics["best_epoch"]].iloc[0]
    assert best["dev_ua"] == pytest.approx(history["dev_ua"].max())  # chosen on dev
    config = files.read_json(tmp_path / files.CONFIG)
    assert config["record_test_curve"] is False and config["dev_split"] == fold.dev_split

    curve_dir = tmp_path / "curve"
    curve = train_fold(small_config(record_test_curve=True), data, fold, curve_dir)
    assert set(curve) == {"test", "dev", "best_epoch", "test_last", "test_best_epoch_optimistic", "calibration"}
    history = pd.read_csv(curve_dir / files.HISTORY)
    assert list(history.columns) == ["epoch", "train_loss", "dev_loss", "dev_ua", "dev_wa", "test_ua", "test_wa", "lr", "seconds"]
    best = history[history["epoch"] == curve["best_epoch"]].iloc[0]
    assert curve["test"]["ua"] == pytest.approx(best["test_ua"])  # reported test = dev-selected epoch
    assert curve["test_best_epoch_optimistic"]["ua"] == pytest.approx(history["test_ua"].max())
    assert curve["test_last"]["ua"] == pytest.approx(history["test_ua"].iloc[-1])
    for part in ("test", "dev", "test_last"):  # scoring test every epoch changes nothing else
        assert curve[part] == metrics[part]


def test_a_run_scores_test_exactly_twice(data, tmp_path, monkeypatch):
    """At the last epoch and, with the kept weights, at the dev-selected one: never per epoch."""
    scored = []
    real_score = loop._score

    def counting_score(task, head, data, rows, batch_size, scaler, split="", epoch=0):
        scored.append((split, epoch))
        return real_score(task, head, data, rows, batch_size, scaler, split, epoch)

    monkeypatch.setattr(loop, "_score", counting_score)
    fold = protocol_folds(small_config(), data)[0]
    metrics = train_fold(small_config(epochs=4), data, fold, tmp_path)
    assert [epoch for split, epoch in scored if split == "test"] == [4, metrics["best_epoch"]]
    # dev every epoch, and once more at the kept weights for the temperature (calibration.py)
    assert [epoch for split, epoch in scored if split == "dev"] == [1, 2, 3, 4, metrics["best_epoch"]]

    predictions = pd.read_csv(tmp_path / files.PREDICTIONS)
    assert sorted(predictions["id"]) == sorted(fold.test)
    probability_columns = [c for c in predictions.columns if c.startswith("p_")]
    assert len(probability_columns) == 4
    assert np.allclose(predictions[probability_columns].sum(axis=1), 1.0, atol=1e-5)
    accuracy = (predictions["label"] == predictions["prediction"]).mean()
    assert accuracy == pytest.approx(metrics["test"]["wa"])

    weights = files.read_json(tmp_path / files.LAYER_WEIGHTS)
    assert weights["layers"] == [0] and sum(weights["weights"]) == pytest.approx(1.0)


def test_model_file_rebuilds_the_head_with_weights_only(data, tmp_path):
    fold = protocol_folds(small_config(), data)[0]
    train_fold(small_config(epochs=2), data, fold, tmp_path)
    saved = torch.load(tmp_path / files.MODEL, weights_only=True)
    assert saved["head"] == "shiftcnn" and saved["config"]["fold"] == fold.name
    head = files.load_model(tmp_path / files.MODEL)
    assert head.constructor_kwargs["n_div"] == 8  # the 1/8 proportion reached the head
    scaler_stats = saved["feature_scaler"]
    rows = data.positions(fold.test[:4])
    x, lengths, _ = next(data.batches([rows]))
    x = (x - scaler_stats["mean"][None, :, None, :]) / scaler_stats["std"][None, :, None, :]
    x = x * (torch.arange(x.shape[2])[None, :] < lengths[:, None])[:, None, :, None]
    with torch.no_grad():
        logits = head(x, lengths)
    predictions = pd.read_csv(tmp_path / files.PREDICTIONS).set_index("id")
    labels = saved["config"]["task_state"]["labels"]
    assert [labels[i] for i in logits.argmax(1)] == list(predictions.loc[fold.test[:4], "prediction"])


def test_same_seed_same_metrics_and_other_seed_differs(data, tmp_path):
    fold = protocol_folds(small_config(), data)[1]
    first = train_fold(small_config(), data, fold, tmp_path / "a")
    again = train_fold(small_config(), data, fold, tmp_path / "b")
    other = train_fold(small_config(seed=1), data, fold, tmp_path / "c")
    assert (tmp_path / "a" / files.METRICS).read_text() == (tmp_path / "b" / files.METRICS).read_text()
    history_a = pd.read_csv(tmp_path / "a" / files.HISTORY).drop(columns="seconds")
    history_c = pd.read_csv(tmp_path / "c" / files.HISTORY).drop(columns="seconds")
    assert first == again
    assert not history_a.equals(history_c)
    assert other["test"]["labels"] == first["test"]["labels"]


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_identical_metrics(data, tmp_path):
    fold = protocol_folds(small_config(), data)[0]
    config = small_config(epochs=4)
    reference = train_fold(config, data, fold, tmp_path / "reference")

    def stop_after_two(_fold, epoch, _total, _row):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_fold(config, data, fold, tmp_path / "resumed", progress=stop_after_two, checkpoint_seconds=0)
    assert (tmp_path / "resumed" / files.CHECKPOINT).is_file()
    assert not files.is_finished(tmp_path / "resumed")
    seen = []
    resumed = train_fold(config, data, fold, tmp_path / "resumed", progress=lambda f, e, t, r: seen.append(e))
    assert seen == [3, 4]  # continued after the last finished epoch
    assert resumed == reference
    history = pd.read_csv(tmp_path / "resumed" / files.HISTORY)
    assert list(history["epoch"]) == [1, 2, 3, 4]


def test_resume_from_an_older_checkpoint_replays_to_identical_metrics(data, tmp_path):
    """With time-based checkpoints only the first epoch is saved here; the rerun replays epoch 2."""
    fold = protocol_folds(small_config(), data)[0]
    config = small_config(epochs=3)
    reference = train_fold(config, data, fold, tmp_path / "reference")

    def stop_after_two(_fold, epoch, _total, _row):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_fold(config, data, fold, tmp_path / "resumed", progress=stop_after_two, checkpoint_seconds=3600)
    seen = []
    resumed = train_fold(config, data, fold, tmp_path / "resumed", progress=lambda f, e, t, r: seen.append(e))
    assert seen == [2, 3]
    assert resumed == reference


def test_finished_fold_is_skipped_and_a_different_config_is_refused(data, tmp_path):
    fold = protocol_folds(small_config(), data)[0]
    first = train_fold(small_config(epochs=1), data, fold, tmp_path)
    seen = []
    assert train_fold(small_config(epochs=1), data, fold, tmp_path, progress=lambda *a: seen.append(a)) == first
    assert seen == []
    with pytest.raises(TrainingError, match="different configuration"):
        train_fold(small_config(epochs=2), data, fold, tmp_path)


def test_streamed_data_trains_like_in_memory(workspace, data, tmp_path):
    streamed = load_training_data(
        workspace.manifest_for("synthetic"), workspace.cache_path("synthetic", "fbank"), device="cpu",
        stream=True, workers=1,
    )
    assert streamed.streamed and streamed.ids == data.ids
    fold = protocol_folds(small_config(), data)[0]
    in_memory = train_fold(small_config(epochs=2), data, fold, tmp_path / "memory")
    from_disk = train_fold(small_config(epochs=2), streamed, fold, tmp_path / "stream")
    assert from_disk["test"]["ua"] == pytest.approx(in_memory["test"]["ua"])
    assert from_disk["dev"]["ua"] == pytest.approx(in_memory["dev"]["ua"])


def test_train_folds_writes_summary_over_all_folds(data, tmp_path):
    config = small_config(epochs=1)
    results = train_folds(config, data, tmp_path)
    assert list(results) == ["fold1", "fold2"]  # synthetic: leave-one-session-out, 2 sessions
    summary = files.read_json(tmp_path / files.SUMMARY)
    uas = [results[f]["test"]["ua"] for f in results]
    assert summary["test"]["ua"]["per_fold"] == uas
    assert summary["test"]["ua"]["mean"] == pytest.approx(np.mean(uas))
    assert summary["test"]["ua"]["std"] == pytest.approx(np.std(uas, ddof=1))
    assert set(summary["test"]) == {"ua", "wa", "macro_f1"}
    pooled = pd.concat([pd.read_csv(tmp_path / f / files.PREDICTIONS) for f in results])  # every test utterance once
    assert summary["test"]["wa"]["pooled"] == pytest.approx((pooled["label"] == pooled["prediction"]).mean())
    for name in ("ua", "wa", "macro_f1"):
        low, high = summary["test"][name]["ci95"]
        assert low <= summary["test"][name]["pooled"] <= high and high > low
    assert summary["bootstrap"]["confidence"] == 0.95

    from ser.training.calibration import ece, recalibrate
    temperatures = [results[f]["calibration"]["temperature"] for f in results]
    assert summary["calibration"]["temperature"]["per_fold"] == temperatures
    assert summary["calibration"]["test_ece_after"]["mean"] == pytest.approx(
        np.mean([results[f]["calibration"]["test_after"]["ece"] for f in results]))
    tables = [pd.read_csv(tmp_path / f / files.PREDICTIONS) for f in results]
    columns = [c for c in tables[0].columns if c.startswith("p_")]
    labels = np.concatenate([t["label"].map({c[2:]: k for k, c in enumerate(columns)}).to_numpy() for t in tables])
    after = np.concatenate([recalibrate(t[columns].to_numpy(), T) for t, T in zip(tables, temperatures)])
    block = summary["calibration"]["pooled"]
    assert block["clips"] == len(pooled)
    assert block["ece_before"] == pytest.approx(ece(pd.concat(tables)[columns].to_numpy(), labels))
    assert block["ece_after"] == pytest.approx(ece(after, labels))
    assert 0 < block["ece_noise_floor_after"] < 1


def test_select_folds_by_number_or_name(data):
    folds = protocol_folds(small_config(), data)
    assert select_folds(folds, "2") == [(1, folds[1])]
    assert select_folds(folds, folds[0].name) == [(0, folds[0])]
    with pytest.raises(UserInputError, match="no fold") as refused:
        select_folds(folds, "7")
    assert f"1 ({folds[0].name})" in refused.value.hint
    numbered = [dataclasses.replace(fold, name=str(i + 1)) for i, fold in enumerate(folds)]  # ASED's speaker groups
    with pytest.raises(UserInputError, match="no fold") as refused:
        select_folds(numbered, "7")
    assert refused.value.hint.endswith("a number or name: 1, 2")  # not "1 (1), 2 (2)"


def test_a_step_budget_ends_training_inside_an_epoch_and_timnet_follows_the_corpus(data, tmp_path):
    fold = protocol_folds(small_config(), data)[0]
    steps_per_epoch = -(-len(fold.train) // 8)
    budget = steps_per_epoch + 1  # one step into the second epoch
    config = TrainConfig.create("timnet", {"num_blocks": None}, batch_size=8, max_steps=budget, seed=0,
                                standardize=True, corpus="iemocap")
    metrics = train_fold(config, data, fold, tmp_path)
    history = pd.read_csv(tmp_path / files.HISTORY)
    assert list(history["epoch"]) == [1, 2] and metrics["best_epoch"] in (1, 2)
    resolved = files.read_json(tmp_path / files.CONFIG)["head_resolved"]
    assert resolved["num_blocks"] == 10  # IEMOCAP's TIM-Net depth, since the run did not set it


def test_an_update_cadence_scores_dev_only_where_it_falls_and_selects_among_those(data, tmp_path):
    fold = protocol_folds(small_config(), data)[0]
    steps_per_epoch = -(-len(fold.train) // 8)
    every = 2 * steps_per_epoch + 1  # falls inside epochs 3 and 5 of 6
    config = TrainConfig.create("linear", batch_size=8, max_steps=6 * steps_per_epoch, eval_every_updates=every,
                                seed=0, standardize=True)
    metrics = train_fold(config, data, fold, tmp_path)
    history = pd.read_csv(tmp_path / files.HISTORY)
    assert list(history["epoch"]) == [3, 5, 6] and list(history["step"]) == [3 * steps_per_epoch, 5 * steps_per_epoch,
                                                                             6 * steps_per_epoch]
    assert metrics["best_epoch"] in (3, 5, 6)
    assert files.read_json(tmp_path / files.CONFIG)["eval_every_updates"] == every


def test_a_batch_larger_than_the_training_part_is_noted_once_per_fold(data, tmp_path, capsys):
    fold = protocol_folds(small_config(), data)[0]
    train_fold(small_config(epochs=1, batch_size=len(fold.train) + 1), data, fold, tmp_path / "large")
    assert f"is larger than its training part ({len(fold.train)} utterances)" in capsys.readouterr().err
    train_fold(small_config(epochs=1, batch_size=len(fold.train) + 1), data, fold, tmp_path / "large")  # finished
    assert "larger than its training part" not in capsys.readouterr().err
    train_fold(small_config(epochs=1, batch_size=len(fold.train)), data, fold, tmp_path / "equal")
    assert "larger than its training part" not in capsys.readouterr().err
