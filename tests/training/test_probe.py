"""`ser probe` on a real synthetic fbank cache, against a plain scikit-learn logistic regression
computed here from the frames themselves."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ser.data.folds import make_folds
from ser.data.manifest import read_manifest
from ser.errors import UserInputError
from ser.features.cache import CacheReader
from ser.studies.floor import floor_of
from ser.training import metrics
from ser.training.loading import load_training_data
from ser.training.probe import C_GRID, ProbeProtocol, cached_probe, layer_summary, probe_cache_path, run_probe


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    """manifests/synthetic.csv (the default corpus: 8 speakers in 4 sessions, 384 clips) + cache/synthetic/fbank.h5."""
    return build_fbank_workspace(tmp_path_factory.mktemp("probe"))


def paths(workspace: Path) -> tuple[Path, Path]:
    return workspace / "manifests" / "synthetic.csv", workspace / "cache" / "synthetic" / "fbank.h5"


def plain_logistic_regression_ua(manifest: Path, cache: Path, chosen_c: list[float]) -> list[float]:
    """Per fold: test UA of sklearn's standardise → LogisticRegression(C) (the C the probe chose on
    dev) on each utterance's mean and std over the cached frames, fitted on the fold's training
    and dev parts together (the probe's refit)."""
    df = read_manifest(manifest)
    with CacheReader(cache) as reader:
        frames = {utt: reader.read(utt)[0] for utt in df["id"]}  # (T, D) of the only layer
    stats = {utt: np.concatenate([x.mean(axis=0), x.std(axis=0)]) for utt, x in frames.items()}  # (2D,)
    labels = df.set_index("id")["label"]
    scores = []
    for fold, c in zip(make_folds(df), chosen_c):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
        seen = fold.train + fold.dev
        model.fit(np.stack([stats[u] for u in seen]), labels[seen].to_numpy())
        predicted = model.predict(np.stack([stats[u] for u in fold.test]))
        scores.append(metrics.ua(labels[fold.test].to_numpy(), predicted))
    return scores


def test_probe_matches_a_plain_logistic_regression_on_the_same_statistics_and_folds(workspace: Path):
    manifest, cache = paths(workspace)
    table = run_probe(manifest, cache)
    assert list(table["layer"]) == ["0"] * 4  # one fbank "layer", no `all` row; 4 sessions
    assert list(table["fold"]) == [fold.name for fold in make_folds(read_manifest(manifest))]
    with threadpool_limits(limits=1):  # as the probe: spare BLAS threads only spin on a busy machine
        plain = plain_logistic_regression_ua(manifest, cache, list(table["regularisation"]))
    assert table["ua"].mean() == pytest.approx(np.mean(plain), abs=0.02)
    assert table["ua"].mean() > 0.4  # four balanced classes: chance is 0.25
    assert set(table["regularisation"]) <= {1e-3, 1e-2, 1e-1, 1.0, 10.0}
    assert (table[["train", "dev", "test"]].sum(axis=1) == 384).all()


def test_the_probe_chooses_c_by_dev_log_loss_not_dev_ua(workspace: Path):
    """Per fold, the chosen C is the one whose plain logistic regression (fitted on train) has the
    lowest log-loss on dev, and the dev UA reported is that C's, not the best UA of the grid."""
    from sklearn.metrics import log_loss

    manifest, cache = paths(workspace)
    table = run_probe(manifest, cache)
    df = read_manifest(manifest)
    with CacheReader(cache) as reader:
        frames = {utt: reader.read(utt)[0] for utt in df["id"]}  # (T, D)
    stats = {utt: np.concatenate([x.mean(axis=0), x.std(axis=0)]) for utt, x in frames.items()}  # (2D,)
    labels = df.set_index("id")["label"]
    with threadpool_limits(limits=1):
        for fold, (_, row) in zip(make_folds(df), table.iterrows()):
            scaler = StandardScaler().fit(np.stack([stats[u] for u in fold.train]))
            train, dev = (scaler.transform(np.stack([stats[u] for u in ids])) for ids in (fold.train, fold.dev))
            fits = {c: LogisticRegression(C=c, max_iter=1000).fit(train, labels[fold.train]) for c in C_GRID}
            losses = {c: log_loss(labels[fold.dev], m.predict_proba(dev), labels=m.classes_) for c, m in fits.items()}
            chosen = min(C_GRID, key=losses.get)
            assert row["regularisation"] == chosen
            assert row["dev_loss"] == pytest.approx(losses[chosen], rel=1e-3)
            assert row["dev_ua"] == pytest.approx(metrics.ua(labels[fold.dev].to_numpy(), fits[chosen].predict(dev)))


def test_dimensional_probe_scores_ccc_with_ridge(workspace: Path):
    manifest, cache = paths(workspace)
    table = run_probe(manifest, cache, ProbeProtocol(task="dimensional"))
    summary = layer_summary(table)
    assert {"ccc_arousal_mean", "ccc_valence_mean", "ccc_dominance_mean", "ccc_mean_mean", "dev_ccc_mean_mean"} <= set(
        summary.columns)
    assert summary["ccc_arousal_mean"].iloc[0] > 0.3  # loudness and rate carry arousal in the synthetic corpus
    floor = floor_of(summary)  # the report's floor row of a dimensional table
    assert floor.threshold["ccc_mean"] == pytest.approx(table["ccc_mean"].mean())
    assert not floor.beaten("ccc_mean", table["ccc_mean"].mean()) and floor.beaten("ccc_mean", 1.0)


def test_cached_probe_is_computed_once_per_cache_file_and_protocol(workspace: Path):
    manifest, cache = paths(workspace)
    protocol = ProbeProtocol(task="dimensional", folds="speaker", k=4)
    first = cached_probe(manifest, cache, protocol)
    stored = probe_cache_path(cache, protocol)
    assert stored.parent == cache.with_suffix(".probe") and stored.is_file()
    record = json.loads(stored.read_text())
    for row in record["rows"]:
        row["ccc_mean"] = 0.123  # a value only the stored copy holds
    stored.write_text(json.dumps(record))
    assert (cached_probe(manifest, cache, protocol)["ccc_mean"] == 0.123).all()
    os.utime(cache)  # the cache file changed (e.g. re-extracted): recompute
    again = cached_probe(manifest, cache, protocol)
    pd.testing.assert_frame_equal(again, first)
    assert list(again["fold"]) == ["1", "2", "3", "4"]


def test_layers_out_of_range_are_refused_in_the_same_words_as_training_refuses_them(workspace: Path):
    manifest, cache = paths(workspace)
    with pytest.raises(UserInputError) as probing:
        run_probe(manifest, cache, layers=[0, 3, 5])
    with pytest.raises(UserInputError) as training:
        load_training_data(manifest, cache, layers=[0, 3, 5], device="cpu")
    assert str(probing.value) == str(training.value) == "layers [3, 5] are not in the cache (it has layers 0-0)"


def test_cli_writes_the_table_summary_and_figure(workspace: Path, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "ser.cli", "probe", "--workdir", str(workspace), "--out",
                           str(tmp_path / "p")], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "p" / "probe.csv")
    assert len(table) == 4 and (tmp_path / "p" / "probe.png").read_bytes()[:4] == b"\x89PNG"
    assert f"{100 * table['ua'].mean():.2f} ±" in done.stdout


def test_cli_refuses_an_unknown_task_at_the_edge(workspace: Path):
    from typer.testing import CliRunner

    from ser.cli import app

    bad = CliRunner().invoke(app, ["probe", "--workdir", str(workspace), "--task", "colour"])
    assert bad.exit_code == 2 and "--task" in bad.output and "colour" in bad.output
