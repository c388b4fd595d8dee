"""Batched grid training: stacked members against solo runs, SIGKILL resume, a diverging member.

Real fbank cache of a small synthetic corpus, the real trainer and the real `ser sweep` process.
"""

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ser.heads import create_head
from ser.studies.grid import build_grid
from ser.studies.sweep import SweepSettings, run_sweep
from ser.training import batched_loop, loop
from ser.training import run_dir as files
from ser.training.batched_loop import MemberSpec, train_group
from ser.training.config import TrainConfig, head_constructor_options
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.protocol import protocol_folds

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    """manifests/synthetic.csv (4 speakers, 2 sessions, 4 clips per class) + cache/synthetic/fbank.h5."""
    return build_fbank_workspace(tmp_path_factory.mktemp("batched-ws"), speakers=4, sessions=2, per_class=4)


def state_dict(run_dir: Path) -> dict:
    return files.load_torch(run_dir / files.MODEL)["state_dict"]


EPOCHS = 3  # of three optimiser steps each (fold 1), at the recipe's own learning rate from step one
WEIGHT_DECAY = 0.5  # every family, Adam (L2) and AdamW (decoupled) alike: a dropped decay shows


def reference_head_options(head: str, kwargs: dict, dim: int) -> dict:
    """`kwargs` with the head's reference SpecAugment and input projection set explicitly (unless
    given): an fbank cache changes both by default, and these comparisons must keep each member's
    own mask draws and the reference graph."""
    preset = create_head(head, dim, 1, 4, **head_constructor_options(kwargs))
    reference = {"spec_augment": preset.spec_augment is not None}
    if "input_projection" in preset.constructor_kwargs:
        reference["input_projection"] = preset.input_projection is not None
    return {**reference, **kwargs}


def assert_close_values(ours, theirs, tolerance: float, where: str = "") -> None:
    """Nested JSON values equal, numbers within `tolerance` × max(1, |number|)."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict) and ours.keys() == theirs.keys(), where
        for key in ours:
            assert_close_values(ours[key], theirs[key], tolerance, f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), where
        for k, (one, other) in enumerate(zip(ours, theirs)):
            assert_close_values(one, other, tolerance, f"{where}[{k}]")
    elif isinstance(ours, (int, float)) and not isinstance(ours, bool):
        assert isinstance(theirs, (int, float)) and abs(ours - theirs) <= tolerance * max(1, abs(ours)), \
            (where, ours, theirs)
    else:
        assert ours == theirs, where


def assert_members_match_solo_runs(workspace: Path, tmp_path: Path, variants: list, noise_driven: str = "",
                                   epochs: int = EPOCHS) -> None:
    """Train `variants` (head, options, seed, fold index) as one stacked model for `epochs` epochs of
    three optimiser steps, then each alone: parameters within max(1e-5, lr / 20), the same
    run-directory files, config.json equal, predictions.csv's values within 1e-5 and metrics.json's
    within 1e-5 relative, but for the calibration temperature: an argmin of a dev NLL that is
    nearly flat while a head is near chance (T ≈ 8 after one epoch), it moves by up to 20 times the
    relative difference of the outputs it is fitted to, so it is compared within 1e-4 (the NLL, ECE
    and Brier score after scaling stay within 1e-5).

    Sized so that a wrong optimiser fails it: no warm-up (the recipes warm up from 5e-7, where three
    steps moved a weight by at most 3.5e-5) and weight decay WEIGHT_DECAY at the recipe's own rate
    (1e-4 to 1e-3), so that a learning rate 10% off (0.1 lr a step) or a dropped weight decay
    (0.5 lr |w| a step) moves weights by several tolerances within three steps. The tolerance is a
    twentieth of one Adam step: Adam divides by √v, so an element whose gradient is near zero moves
    by a sizeable part of the lr on float32 rounding alone, and two exact implementations round
    differently (the transformers' attention over stacked batches showed 1.3e-5 at lr 5e-4).

    Parameters whose names match `noise_driven` are not compared: a bias right before a
    training-mode BatchNorm (or under a softmax that removes it) has a true gradient of 0, so Adam
    turns float32 rounding noise into steps of up to the lr, and two exact implementations round
    differently; predictions.csv and metrics.json still show that it changes no output."""
    data = load_training_data(workspace / "manifests" / "synthetic.csv", workspace / "cache" / "synthetic" / "fbank.h5",
                              device="cpu")
    folds = protocol_folds(TrainConfig.create(variants[0][0], epochs=1), data)
    batch_size = math.ceil(len(folds[0].train) / 3)  # one epoch = three optimiser steps on fold 1
    specs = [MemberSpec(TrainConfig.create(head, reference_head_options(head, kwargs, data.dim), epochs=epochs,
                                           batch_size=batch_size, seed=seed, standardize=True, warmup_epochs=0,
                                           weight_decay=WEIGHT_DECAY),
                        folds[fold], tmp_path / f"batched{i}") for i, (head, kwargs, seed, fold) in enumerate(variants)]
    results = train_group(specs, data)
    assert [r.error for r in results] == [None] * len(specs)
    for i, spec in enumerate(specs):
        solo = tmp_path / f"solo{i}"
        train_fold(spec.config, data, spec.fold, solo)
        batched, alone = state_dict(spec.out_dir), state_dict(solo)
        assert batched.keys() == alone.keys()
        tolerance = max(1e-5, spec.config.recipe.lr / 20)
        for name in batched:
            if not (noise_driven and re.fullmatch(noise_driven, name)):
                assert torch.allclose(batched[name], alone[name], atol=tolerance, rtol=0), (i, name)
        assert sorted(p.name for p in spec.out_dir.iterdir()) == sorted(p.name for p in solo.iterdir())
        assert files.read_json(spec.out_dir / files.CONFIG) == files.read_json(solo / files.CONFIG)
        ours, theirs = files.read_json(spec.out_dir / files.METRICS), files.read_json(solo / files.METRICS)
        temperatures = [metrics["calibration"].pop("temperature") for metrics in (ours, theirs)]
        assert temperatures[0] == pytest.approx(temperatures[1], rel=1e-4), f"member {i} temperature"
        assert_close_values(ours, theirs, 1e-5, f"member {i} metrics")
        ours, theirs = (pd.read_csv(d / files.PREDICTIONS, dtype={"id": str}) for d in (spec.out_dir, solo))
        pd.testing.assert_frame_equal(ours, theirs, check_exact=False, atol=1e-5, rtol=0)
        # a member's saved model holds its own tensors, not views into the group's stacked storage
        assert abs((spec.out_dir / files.MODEL).stat().st_size - (solo / files.MODEL).stat().st_size) < 1024
    one, other = state_dict(specs[0].out_dir), state_dict(specs[1].out_dir)
    assert not torch.allclose(one["classifier.weight"], other["classifier.weight"], atol=1e-3)  # members differ


def test_cnn_family_members_match_solo_runs(workspace: Path, tmp_path: Path):
    assert_members_match_solo_runs(workspace, tmp_path, [
        ("shiftcnn", {"shift_proportion": "1/2", "shift_placement": "residual"}, 0, 0),
        ("shiftcnn", {"shift_proportion": "1/8", "shift_placement": "inplace"}, 1, 0),
        ("cnn", {}, 2, 0),
        ("shiftcnn", {"shift_proportion": "1/4", "shift_placement": "tsm-residual", "shift_bidirectional": True}, 0, 1),
    ])  # the last on another fold: other rows, other step count


def test_members_with_an_input_projection_match_solo_runs(workspace: Path, tmp_path: Path):
    # the fbank default of the CNN family: each member's own Linear(D, D) first
    projected = {"input_projection": True}
    assert_members_match_solo_runs(workspace, tmp_path, variants=[
        ("shiftcnn", {**projected, "shift_proportion": "1/4", "shift_placement": "residual"}, 0, 0),
        ("cnn", projected, 1, 1),
    ])


@pytest.mark.parametrize("spec_augment", [False, True])  # with it, each member draws its masks from its own RNG
def test_linear_probe_members_match_solo_runs(workspace: Path, tmp_path: Path, spec_augment: bool):
    options = {"spec_augment": spec_augment}
    assert_members_match_solo_runs(workspace, tmp_path, [
        ("linear", options, 0, 0), ("linear", options, 1, 0), ("linear", options, 2, 1)])


def test_linear_members_follow_the_update_cadence_like_solo_runs(workspace: Path, tmp_path: Path):
    data = load_training_data(workspace / "manifests" / "synthetic.csv", workspace / "cache" / "synthetic" / "fbank.h5",
                              device="cpu")
    folds = protocol_folds(TrainConfig.create("linear"), data)
    steps = -(-len(folds[0].train) // 8)  # per epoch
    configs = [TrainConfig.create("linear", batch_size=8, max_steps=4 * steps, eval_every_updates=every, seed=0,
                                  standardize=True) for every in (2 * steps + 1, 2 * steps)]
    specs = [MemberSpec(config, folds[0], tmp_path / f"batched{i}") for i, config in enumerate(configs)]
    assert [r.error for r in train_group(specs, data)] == [None, None]
    for i, spec in enumerate(specs):
        train_fold(spec.config, data, spec.fold, tmp_path / f"solo{i}")
        batched, solo = (pd.read_csv(d / files.HISTORY) for d in (spec.out_dir, tmp_path / f"solo{i}"))
        assert list(batched["epoch"]) == list(solo["epoch"]) and list(batched["step"]) == list(solo["step"])
    assert list(pd.read_csv(specs[0].out_dir / files.HISTORY)["epoch"]) == [3, 4]  # update 2·steps + 1, then the last
    assert list(pd.read_csv(specs[1].out_dir / files.HISTORY)["epoch"]) == [2, 4]


def test_transformer_family_members_match_solo_runs(workspace: Path, tmp_path: Path):
    # one epoch (three steps at 5e-4): an epoch of these three costs ~10 s on one core
    assert_members_match_solo_runs(workspace, tmp_path, epochs=1, variants=[
        ("transformer", {}, 0, 0),
        ("transformer", {"shift_proportion": "1/4", "shift_placement": "residual"}, 1, 0),
        ("transformer", {"shift_proportion": "1/8", "shift_placement": "inplace", "shift_bidirectional": True}, 0, 1),
    ])


def test_shiftformer_members_match_solo_runs(workspace: Path, tmp_path: Path):
    assert_members_match_solo_runs(workspace, tmp_path, epochs=1, variants=[
        ("shiftformer", {"shift_proportion": "1/4"}, 0, 0),
        ("shiftformer", {"shift_proportion": "1/8", "shift_bidirectional": False}, 1, 1),
    ])


def test_timnet_members_match_solo_runs(workspace: Path, tmp_path: Path):
    # dropout 0.1 (the preset's): each member's channel masks come from its own RNG state;
    # the BatchNorm running statistics are compared too (they are in the state dict)
    options = {"num_blocks": 3}
    assert_members_match_solo_runs(workspace, tmp_path, [
        ("timnet", options, 0, 0), ("timnet", options, 1, 0), ("timnet", options, 2, 1)],
        noise_driven=r"(forward|backward)_blocks\.\d+\.convs\.\d+\.bias")


def test_lstm_family_members_match_solo_runs(workspace: Path, tmp_path: Path):
    # the BiLSTMs as one grouped recurrence; each member's in-place shift its own; SpecAugment on (the preset's)
    assert_members_match_solo_runs(workspace, tmp_path, [
        ("shiftlstm", {}, 0, 0),
        ("shiftlstm", {"shift_proportion": "1/8", "shift_bidirectional": True}, 1, 0),
        ("lstm", {}, 2, 1)])


def test_lstm_members_with_dropout_between_layers_match_solo_runs(workspace: Path, tmp_path: Path):
    options = {"lstm_layers": 2, "dropout": 0.2, "hidden_size": 16}
    assert_members_match_solo_runs(workspace, tmp_path, [
        ("lstm", options, 0, 0), ("lstm", options, 1, 1)])


def test_ctarnn_members_match_solo_runs(workspace: Path, tmp_path: Path):
    # the preset's dropout 0.1 between its two LSTM layers and before the classifier, drawn per member;
    # the attentive pooling's score bias adds one constant to every frame's score, which its softmax
    # removes: a true gradient of 0, so Adam steps on rounding noise as for TIM-Net's conv biases
    assert_members_match_solo_runs(workspace, tmp_path, [
        ("ctarnn", {"hidden_size": 16}, 0, 0), ("ctarnn", {"hidden_size": 16}, 1, 0), ("ctarnn", {"hidden_size": 16}, 2, 1)],
        noise_driven=r"pool\.score\.bias")


def test_stacked_members_score_test_exactly_twice(workspace: Path, tmp_path: Path, monkeypatch):
    """Each member: at its last epoch (stacked) and at its dev-selected epoch (write_fold_results)."""
    scored = []
    stacked_score, solo_score = batched_loop._score, loop._score

    def counting_stacked(member, data, which, outputs, epoch):
        if which == 2:
            scored.append((member.spec.out_dir.name, epoch))
        return stacked_score(member, data, which, outputs, epoch)

    def counting_solo(task, head, data, rows, batch_size, scaler, split="", epoch=0):
        # the only solo scorings left, both of the kept dev-selected weights: test, and dev for the temperature
        scored.append(("selected", epoch) if split == "test" else ("calibration", split, epoch))
        return solo_score(task, head, data, rows, batch_size, scaler, split, epoch)

    monkeypatch.setattr(batched_loop, "_score", counting_stacked)
    monkeypatch.setattr(loop, "_score", counting_solo)
    data = load_training_data(workspace / "manifests" / "synthetic.csv", workspace / "cache" / "synthetic" / "fbank.h5",
                              device="cpu")
    folds = protocol_folds(TrainConfig.create("shiftcnn"), data)
    specs = [MemberSpec(TrainConfig.create("shiftcnn", seed=seed, epochs=epochs, batch_size=16), folds[0],
                        tmp_path / f"member{seed}") for seed, epochs in ((0, 3), (1, 2))]
    results = train_group(specs, data)
    best = [result.metrics["best_epoch"] for result in results]
    assert sorted(scored, key=str) == sorted([("member0", 3), ("member1", 2), ("selected", best[0]), ("selected", best[1]),
                                              ("calibration", "dev", best[0]), ("calibration", "dev", best[1])], key=str)
    for spec, result in zip(specs, results):
        assert "test_best_epoch_optimistic" not in result.metrics
        assert not any(c.startswith("test_") for c in pd.read_csv(spec.out_dir / files.HISTORY).columns)


def sweep_command(workspace: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "ser.cli", "sweep", "--head", "shiftcnn", "--shift-proportion", "1/2,1/8",
            "--seeds", "0", "--epochs", "3", "--fold", "1", "--threads", "1", "--batch-runs", "on", "--device", "cpu",
            "--workdir", str(workspace), "--out", str(out)]


@pytest.mark.slow
def test_batched_runs_resume_after_sigkill_to_identical_results(workspace: Path, tmp_path: Path):
    grid = build_grid(None, {"head": ["shiftcnn"], "shift_proportion": ["1/2,1/8"], "seed": ["0"],
                             "epochs": ["3"]}, [], ["1"])
    reference = run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "whole", device="cpu", threads=1,
                                              batch_runs="on"))
    assert reference.done == 2
    runs = pd.read_csv(reference.table_path)["run_dir"].tolist()

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(sweep_command(workspace, out), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not all((out / run / files.CHECKPOINT).is_file() for run in runs):  # every member finished epoch 1
        assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not any(files.is_finished(out / run) for run in runs)

    resumed = subprocess.run(sweep_command(workspace, out), env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    for run in runs:
        assert (out / run / files.METRICS).read_text() == (tmp_path / "whole" / run / files.METRICS).read_text()
        killed, whole = state_dict(out / run), state_dict(tmp_path / "whole" / run)
        assert all(torch.equal(killed[name], whole[name]) for name in whole)
        assert not (out / run / files.CHECKPOINT).exists()


def test_a_diverging_member_does_not_stop_the_others(workspace: Path, tmp_path: Path):
    grid = build_grid(None, {"head": ["shiftcnn"], "lr": ["5e-4,1e30"], "epochs": ["6"]}, [], ["1"])
    outcome = run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "sweep", device="cpu", threads=1,
                                            batch_runs="on"))
    assert (outcome.done, outcome.diverged, outcome.failed) == (1, 1, 0)  # lr 1e30: non-finite outputs in epoch 3
    table = pd.read_csv(outcome.table_path).set_index("lr")
    assert table.loc[1e30, "status"] == "diverged" and table.loc[5e-4, "status"] == "done"
    healthy, diverged = tmp_path / "sweep" / table.loc[5e-4, "run_dir"], tmp_path / "sweep" / table.loc[1e30, "run_dir"]
    assert (diverged / "error.txt").read_text().startswith("training diverged")
    assert not files.is_finished(diverged)
    history = pd.read_csv(healthy / files.HISTORY)
    assert len(history) == 6 and history["train_loss"].notna().all()


def test_stacked_models_in_worker_processes_train_what_one_stacked_model_trains(workspace: Path, tmp_path: Path,
                                                                                 capsys):
    grid = build_grid(None, {"head": ["shiftcnn"], "shift_proportion": ["1/2,1/8"], "seed": ["0,1"],
                             "epochs": ["2"]}, [], ["1"])
    together = run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "one", device="cpu", threads=1,
                                             batch_runs="on", jobs=1))
    apart = run_sweep(grid, SweepSettings(workdir=workspace, out=tmp_path / "two", device="cpu", threads=1,
                                          batch_runs="on", jobs=2))
    printed = " ".join(capsys.readouterr().err.split())
    assert "4 shiftcnn runs × folds as 1 stacked model(s) of K = 4 members" in printed
    assert "4 shiftcnn runs × folds as 2 stacked model(s) of K = 2 members" in printed  # one per worker process
    assert together.done == apart.done == 4
    for run in pd.read_csv(together.table_path)["run_dir"]:
        one, two = state_dict(tmp_path / "one" / run), state_dict(tmp_path / "two" / run)
        assert all(torch.equal(one[name], two[name]) for name in one), run
        assert (tmp_path / "one" / run / files.METRICS).read_text() == (tmp_path / "two" / run / files.METRICS).read_text()
