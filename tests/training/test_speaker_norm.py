"""`--per-speaker`: each speaker's frames z-scored with that speaker's own statistics, in memory and
streamed alike; the probe's pooled statistics normalised the same way from the cache's pooled rows;
a run named and recorded so, compared with the matching floor by `ser report`, and refused by
`ser predict` (a new clip has no speaker statistics). Real synthetic audio, real fbank cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ser.data.manifest import read_manifest, write_manifest
from ser.data.workspace import Workspace
from ser.errors import UserInputError
from ser.features.cache import CacheReader
from ser.studies.grid import build_grid
from ser.studies.report import write_report
from ser.studies.sweep import SweepSettings, run_sweep
from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.probe import ProbeProtocol, cached_probe, layer_summary
from ser.training.run import run_training
from ser.training.speaker_norm import per_speaker_pooled, speaker_of_rows


@pytest.fixture(scope="module")
def workspace(build_fbank_workspace, tmp_path_factory) -> Workspace:
    """4 speakers in 2 sessions, 3 clips per class: 48 utterances."""
    return Workspace(build_fbank_workspace(tmp_path_factory.mktemp("spk"), speakers=4, sessions=2, per_class=3))


def _load(workspace: Workspace, **options):
    return load_training_data(workspace.manifest_for("synthetic"), workspace.cache_path("synthetic", "fbank"),
                              device="cpu", **options)


def _frames_by_speaker(data) -> dict[str, torch.Tensor]:
    """Every frame of each speaker as the batches give them: speaker → (frames, L, D)."""
    rows = np.arange(len(data.ids))
    chunks = [rows[i : i + 7] for i in range(0, len(rows), 7)]
    speakers = data.table["speaker"].astype(str).to_numpy()
    found: dict[str, list[torch.Tensor]] = {}
    for chunk, (x, lengths, _) in zip(chunks, data.batches(chunks)):
        for row, utterance, length in zip(chunk, x, lengths.tolist()):  # utterance (L, T, D)
            found.setdefault(speakers[row], []).append(utterance[:, :length].permute(1, 0, 2))
    return {speaker: torch.cat(parts) for speaker, parts in found.items()}


def test_each_speaker_s_frames_end_with_zero_mean_and_unit_std(workspace):
    plain = _frames_by_speaker(_load(workspace))
    scaled = _frames_by_speaker(_load(workspace, per_speaker=True))
    assert sorted(scaled) == sorted(plain) and len(scaled) == 4
    # the speakers differ before: their raw log-mel means lie far apart
    plain_means = torch.stack([frames.double().mean(dim=0) for frames in plain.values()])  # (S, L, D)
    assert float((plain_means - plain_means.mean(dim=0)).abs().max()) > 0.5
    for frames in scaled.values():
        frames = frames.double()
        assert float(frames.mean(dim=0).abs().max()) < 1e-4
        assert float((frames.std(dim=0, unbiased=False) - 1).abs().max()) < 1e-3


def test_streamed_batches_are_scaled_as_in_memory_ones(workspace):
    in_memory = _load(workspace, per_speaker=True, stream=False)
    streamed = _load(workspace, per_speaker=True, stream=True)
    assert streamed.streamed and not in_memory.streamed
    assert torch.allclose(streamed.speaker_scaler.mean, in_memory.speaker_scaler.mean, atol=1e-6)
    rows = [np.array([3, 17, 40]), np.array([0, 47])]
    for (x, lengths, targets), (y, lengths_y, targets_y) in zip(in_memory.batches(rows), streamed.batches(rows)):
        assert torch.equal(lengths, lengths_y) and torch.equal(targets, targets_y)
        assert torch.allclose(x, y, atol=1e-6)


def test_the_probe_normalises_pooled_statistics_as_the_frames_would_be(workspace):
    """The probe never reads frames: its per-speaker statistics follow from the pooled rows and
    frame counts; they match the mean and std of the scaled frames themselves."""
    data = _load(workspace, per_speaker=True)
    with CacheReader(data.cache_path) as reader:
        pooled = reader.pooled_rows(data.ids, 0)  # (N, 2, D)
        lengths = np.array([reader.lengths[utt] for utt in data.ids])
    derived = per_speaker_pooled(pooled, lengths, speaker_of_rows(data.table)[0])  # (N, 2, D)
    rows = np.arange(len(data.ids))
    from_frames = []
    for x, batch_lengths, _ in data.batches([rows[i : i + 8] for i in range(0, len(rows), 8)]):
        for utterance, length in zip(x[:, 0], batch_lengths.tolist()):  # (T, D) of layer 0
            frames = utterance[:length].double()
            from_frames.append(torch.stack([frames.mean(dim=0), frames.std(dim=0, unbiased=False)]).numpy())
    from_frames = np.stack(from_frames)  # (N, 2, D)
    assert float(np.abs(derived - pooled).max()) > 1.0  # the normalisation changes the statistics
    # the cache's frames are float16, its pooled rows were taken from float32 states: 6e-4 apart here
    assert np.allclose(derived, from_frames, atol=5e-3)

    manifest, cache = workspace.manifest_for("synthetic"), data.cache_path
    plain_ua = layer_summary(cached_probe(manifest, cache, ProbeProtocol()))["ua_mean"]
    speaker_ua = layer_summary(cached_probe(manifest, cache, ProbeProtocol(per_speaker=True)))["ua_mean"]
    assert ProbeProtocol(per_speaker=True).key() == ProbeProtocol().key() + "-spk"
    assert not np.allclose(plain_ua, speaker_ua)


def test_rows_without_a_speaker_are_refused_in_one_line(workspace, tmp_path):
    table = read_manifest(workspace.manifest_for("synthetic"))
    blank = table.assign(speaker=table["speaker"].where(table.index != 5, None))
    with pytest.raises(UserInputError, match=rf"1 row\(s\) have none, e.g. '{table['id'][5]}'"):
        speaker_of_rows(blank)
    with pytest.raises(UserInputError, match="the manifest has no speaker column"):
        speaker_of_rows(table.drop(columns=["speaker"]))
    # the cache is of the same rows (id, path): only the speaker column is missing
    manifest = tmp_path / "synthetic.csv"
    write_manifest(pd.DataFrame(table.drop(columns=["speaker"])), manifest)
    with pytest.raises(UserInputError, match="needs each utterance's speaker"):
        load_training_data(manifest, workspace.cache_path("synthetic", "fbank"), device="cpu", per_speaker=True)
    with pytest.raises(UserInputError, match="--fold none trains the model to deploy"):
        run_training(workspace.root, TrainConfig.create("linear", epochs=1, per_speaker=True), "none", device="cpu")
    with pytest.raises(UserInputError, match="--per-speaker is not available with --test-manifest"):
        load_training_data(manifest, workspace.cache_path("synthetic", "fbank"), device="cpu", per_speaker=True,
                           test_manifest=manifest, test_cache=workspace.cache_path("synthetic", "fbank"))


def test_a_per_speaker_run_is_recorded_compared_with_its_floor_and_refused_by_predict(workspace):
    config = TrainConfig.create("shiftcnn", epochs=2, batch_size=8, per_speaker=True)
    run_dir, _ = run_training(workspace.root, config, "all", device="cpu")
    assert run_dir.name == "shiftcnn-e2-bs8-spk-s0"
    assert files.read_json(run_dir / "fold1" / files.CONFIG)["per_speaker"] is True
    plain_dir, _ = run_training(workspace.root, TrainConfig.create("shiftcnn", epochs=2, batch_size=8), "1",
                                device="cpu")
    assert "per_speaker" not in files.read_json(plain_dir / "fold1" / files.CONFIG)  # as configs were before

    report = write_report(run_dir.parent, workdir=workspace.root).read_text()
    floor = layer_summary(cached_probe(workspace.manifest_for("synthetic"), workspace.cache_path("synthetic", "fbank"),
                                       ProbeProtocol(per_speaker=True)))
    table = report.split("per_speaker = True", 1)[1].split("###", 1)[0]
    assert f"| probe floor: layer 0 (best on dev) | {100 * floor['ua_mean'][0]:.2f} ± " in table

    wav = Path(read_manifest(workspace.manifest_for("synthetic"))["path"][0])
    done = subprocess.run([sys.executable, "-m", "ser.cli", "predict", "--run", str(run_dir), str(wav)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {run_dir / 'fold1'} was trained on features z-scored per speaker")
    assert "hint: train the same head without --per-speaker" in done.stderr


def test_a_per_speaker_sweep_trains_what_ser_train_trains(workspace, tmp_path):
    grid = build_grid(None, {"head": ["shiftcnn"], "epochs": ["2"], "batch_size": ["8"]}, [], ["1"])
    outcome = run_sweep(grid, SweepSettings(workdir=workspace.root, device="cpu", jobs=1, per_speaker=True))
    assert (outcome.done, outcome.failed) == (1, 0)
    assert outcome.sweep_dir == workspace.runs_root("synthetic", "fbank") / "sweep-spk"  # not the plain sweep's
    assert json.loads((outcome.sweep_dir / "sweep.json").read_text())["per_speaker"] is True
    fold_dir = outcome.sweep_dir / pd.read_csv(outcome.table_path)["run_dir"].iloc[0]
    assert files.read_json(fold_dir / files.CONFIG)["per_speaker"] is True
    config = TrainConfig.create("shiftcnn", epochs=2, batch_size=8, per_speaker=True)
    run_dir, _ = run_training(workspace.root, config, "1", device="cpu", out=tmp_path / "train")
    trained = files.read_json(run_dir / "fold1" / files.METRICS)
    assert files.read_json(fold_dir / files.METRICS)["test"] == trained["test"]
