"""Cross-corpus training (train + dev on one corpus, test on another with a label mapping) on
two real synthetic corpora with real fbank caches, the real trainer and the real sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from ser.data.manifest import read_manifest
from ser.errors import CacheError, FoldError, ManifestError, UserInputError
from ser.studies.grid import build_grid
from ser.studies.sweep import SweepSettings, run_sweep
from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.protocol import protocol_folds
from ser.training.run import run_training


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    root = tmp_path_factory.mktemp("cross-ws")
    build_fbank_workspace(root, "synthetic", seed=0, speakers=4, sessions=2, per_class=4)
    return build_fbank_workspace(root, "other", seed=1, renamed={"happy": "joy"}, speakers=4, sessions=2, per_class=4)


def small_config(**changes) -> TrainConfig:
    options = dict(epochs=2, batch_size=16, lr=3e-3, seed=0, standardize=True)
    options.update(changes)
    return TrainConfig.create("shiftcnn", {"spec_augment": False}, **options)


@pytest.fixture(scope="module")
def trained(workspace):
    config = small_config(test_manifest=str(workspace / "manifests" / "other.csv"), label_map={"joy": "happy"})
    run_dir, results = run_training(workspace, config, manifest=workspace / "manifests" / "synthetic.csv",
                                    device="cpu")
    return run_dir, results


def test_cross_corpus_run_trains_on_one_corpus_and_tests_on_the_other(workspace, trained):
    run_dir, results = trained
    assert run_dir.parent == workspace / "runs" / "synthetic" / "fbank"
    assert run_dir.name.endswith("-s0-xother")
    assert list(results) == ["fold1"]
    fold_dir = run_dir / "fold1"
    for name in (files.CONFIG, files.METRICS, files.HISTORY, files.PREDICTIONS, files.MODEL):
        assert (fold_dir / name).is_file(), name
    assert (run_dir / files.SUMMARY).is_file()

    config = json.loads((fold_dir / files.CONFIG).read_text())
    assert config["fold"] == "cross-other"
    assert config["test_manifest"] == str((workspace / "manifests" / "other.csv").resolve())
    assert config["test_corpus"] == "other" and config["label_map"] == {"joy": "happy"}
    assert config["task_state"]["labels"] == ["angry", "happy", "neutral", "sad"]  # the training corpus's

    training = read_manifest(workspace / "manifests" / "synthetic.csv")
    train_rows = len(training)
    other = read_manifest(workspace / "manifests" / "other.csv")
    assert config["dev_split"] == "speaker"  # the training corpus has 4 speakers: dev is whole ones
    dev_rows = train_rows // training["speaker"].nunique()  # 1 of the 4 equal speakers: 25%, the closest to 20%
    assert config["sizes"] == {"train": train_rows - dev_rows, "dev": dev_rows, "test": len(other)}

    predictions = pd.read_csv(fold_dir / files.PREDICTIONS)
    assert len(predictions) == len(other)
    assert sorted(predictions["id"]) == sorted("other:" + other["id"])
    expected = other.set_index("other:" + other["id"])["label"].replace({"joy": "happy"})
    assert (predictions.set_index("id")["label"] == expected[predictions["id"]]).all()
    metrics = json.loads((fold_dir / files.METRICS).read_text())
    assert sum(map(sum, metrics["test"]["confusion"])) == len(other)


def test_ids_collide_between_corpora_and_are_kept_apart(workspace):
    synthetic = read_manifest(workspace / "manifests" / "synthetic.csv")
    other = read_manifest(workspace / "manifests" / "other.csv")
    assert set(synthetic["id"]) & set(other["id"])  # the same generator names its clips alike
    data = load_training_data(workspace / "manifests" / "synthetic.csv", workspace / "cache/synthetic/fbank.h5",
                              device="cpu", test_manifest=workspace / "manifests" / "other.csv",
                              test_cache=workspace / "cache/other/fbank.h5", label_map={"joy": "happy"})
    assert len(set(data.ids)) == len(data.ids) == len(synthetic) + len(other)
    assert data.packed.frames.shape[0] == int(data.lengths.sum())
    (fold,) = protocol_folds(small_config(), data)
    with pytest.raises(UserInputError, match="--folds"):
        protocol_folds(small_config(folds="session"), data)
    assert fold.name == "cross-other"
    assert all(utt.startswith("synthetic:") for utt in fold.train + fold.dev)
    assert sorted(fold.test) == sorted("other:" + other["id"])
    first_test = fold.test[0]
    row = data.positions([first_test])[0]
    with_features = load_training_data(workspace / "manifests" / "other.csv", workspace / "cache/other/fbank.h5",
                                       device="cpu")
    own_row = with_features.positions([first_test.removeprefix("other:")])[0]
    x, _ = data.packed.batch(torch.tensor([row]))  # (1, L, T, D)
    own_x, _ = with_features.packed.batch(torch.tensor([own_row]))
    assert torch.equal(x, own_x)  # the test corpus's own features, not the training corpus's same-named clip


def test_a_test_label_without_mapping_is_refused_listing_it(workspace):
    config = small_config(test_manifest=str(workspace / "manifests" / "other.csv"))
    with pytest.raises(FoldError) as error:
        run_training(workspace, config, manifest=workspace / "manifests" / "synthetic.csv", device="cpu",
                     run_name="unmapped")
    assert "joy (" in error.value.message and "\n" not in error.value.message
    assert "--label-map" in error.value.hint
    assert not (workspace / "runs" / "synthetic" / "fbank" / "unmapped").exists()


def test_a_dropped_label_leaves_its_rows_out_of_the_test_set(workspace):
    data = load_training_data(workspace / "manifests" / "synthetic.csv", workspace / "cache/synthetic/fbank.h5",
                              device="cpu", test_manifest=workspace / "manifests" / "other.csv",
                              test_cache=workspace / "cache/other/fbank.h5", label_map={"joy": None})
    (fold,) = protocol_folds(small_config(), data)
    other = read_manifest(workspace / "manifests" / "other.csv")
    assert len(fold.test) == int((other["label"] != "joy").sum())


def test_missing_or_foreign_test_cache_is_refused(workspace, build_fbank_workspace):
    shutil.copy(workspace / "manifests" / "other.csv", workspace / "manifests" / "nocache.csv")
    config = small_config(test_manifest=str(workspace / "manifests" / "nocache.csv"), label_map={"joy": "happy"})
    with pytest.raises(UserInputError) as error:
        run_training(workspace, config, manifest=workspace / "manifests" / "synthetic.csv", device="cpu")
    assert "nocache" in error.value.message and "ser extract" in error.value.hint
    folder = small_config(test_manifest=str(workspace / "manifests"), label_map={"joy": "happy"})
    with pytest.raises(ManifestError, match="manifests is a folder, not a test manifest file"):  # "does not exist"
        run_training(workspace, folder, manifest=workspace / "manifests" / "synthetic.csv", device="cpu")

    # an mfcc cache where the fbank one should be
    build_fbank_workspace(workspace, "foreign", seed=1, renamed={"happy": "joy"}, model="mfcc", cache_name="fbank",
                          speakers=4, sessions=2, per_class=4)
    config = small_config(test_manifest=str(workspace / "manifests" / "foreign.csv"), label_map={"joy": "happy"})
    with pytest.raises(CacheError) as error:
        run_training(workspace, config, manifest=workspace / "manifests" / "synthetic.csv", device="cpu")
    assert "other features" in error.value.message and "--model fbank" in error.value.hint


def test_cross_corpus_config_round_trips_and_in_corpus_configs_are_unchanged():
    cross = small_config(test_manifest="/x/other.csv", test_corpus="other", label_map={"joy": "happy", "fear": None})
    assert TrainConfig.from_dict(cross.to_dict()) == cross
    assert cross.run_name().endswith("-s0-xother")
    plain = small_config().to_dict()
    assert not {"test_manifest", "test_corpus", "label_map"} & set(plain)


def test_sweep_tests_every_run_on_the_other_corpus(workspace, tmp_path):
    grid = build_grid(None, {"head": ["linear"], "epochs": ["2"]}, [], None)
    outcome = run_sweep(grid, SweepSettings(
        workdir=workspace, manifest=workspace / "manifests" / "synthetic.csv", device="cpu", jobs=1,
        test_manifest=workspace / "manifests" / "other.csv", label_map={"joy": "happy"}))
    assert (outcome.done, outcome.failed) == (1, 0)
    assert outcome.sweep_dir == workspace / "runs" / "synthetic" / "fbank" / "sweep-xother"
    table = pd.read_csv(outcome.table_path)
    assert list(table["fold_name"]) == ["cross-other"]
    assert table["run_dir"].iloc[0].endswith("-xother/fold1")
    sweep_json = json.loads((outcome.sweep_dir / "sweep.json").read_text())
    assert sweep_json["label_map"] == {"joy": "happy"}
    predictions = pd.read_csv(outcome.sweep_dir / table["run_dir"].iloc[0] / files.PREDICTIONS)
    assert len(predictions) == len(read_manifest(workspace / "manifests" / "other.csv"))
