"""`ser distill --unlabelled`: utterances without ratings are loaded after the rated ones, never
enter a fold's protocol, and join a student's training part with the fold teacher's predictions
as targets, unless their speaker or session is in the fold's test part. Real caches and trainer."""

import math

import numpy as np
import pandas as pd
import pytest

from ser.data.corpora.synthetic import prepare_synthetic
from ser.errors import OutputBusyError
from ser.studies.distill_ablation import synthetic_text_workspace
from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.distill.student import CROSSFIT, DISTILL, DistillConfig, run_distillation
from ser.training.loading import load_training_data
from ser.training.protocol import protocol_folds
from ser.distill.teacher import TEACHER_HEAD, run_teacher_training

QUICK = dict(task="dimensional", epochs=2, batch_size=8, standardize=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    work = tmp_path_factory.mktemp("unlabelled")
    corpus = prepare_synthetic(work / "data", speakers=4, sessions=2, per_class=4, seed=1, rated_share=0.5)
    df, text_model = synthetic_text_workspace(work, corpus, hidden_size=32)
    teacher_dir, _ = run_teacher_training(work, TrainConfig.create(TEACHER_HEAD, seed=0, **QUICK), text_model, "1",
                                          device="cpu")
    return work, df, teacher_dir


def test_unlabelled_rows_come_last_with_blank_targets_and_stay_out_of_the_folds(workspace):
    work, df, _ = workspace
    rated = df["valence"].notna()
    assert 0 < rated.sum() < len(df)
    data = load_training_data(work / "manifests" / "synthetic.csv", work / "cache/synthetic/fbank.h5",
                              task="dimensional", device="cpu", unlabelled=True)
    assert data.labelled == rated.sum() and len(data.ids) == len(df)
    assert set(data.unlabelled_ids) == set(df.loc[~rated, "id"])
    assert not data.targets[: data.labelled].isnan().any() and data.targets[data.labelled :].isnan().all()
    in_folds = set()
    for fold in protocol_folds(TrainConfig.create("linear", **QUICK), data):
        in_folds |= set(fold.train) | set(fold.dev) | set(fold.test)
    assert in_folds == set(df.loc[rated, "id"])


@pytest.mark.parametrize("unlabelled", [False, True])
def test_the_student_learns_the_teachers_labels_of_unrated_utterances_outside_the_test_session(workspace, unlabelled):
    work, df, teacher_dir = workspace
    settings = DistillConfig(quality="none", crossfit_parts=2, mc_samples=2, unlabelled=unlabelled)
    student_dir, results = run_distillation(work, teacher_dir, "linear", settings, "1", device="cpu",
                                            out=work / f"student-{unlabelled}", epochs=2)
    fold = student_dir / "fold1"
    note = files.read_json(fold / DISTILL)
    teacher_fold = teacher_dir / "fold1"
    test_ids = set(pd.read_csv(teacher_fold / files.PREDICTIONS, dtype={"id": str})["id"])
    test_sessions = set(df.set_index("id").loc[list(test_ids), "session"])
    expected = df[df["valence"].isna() & ~df["session"].isin(test_sessions)]
    sizes = files.read_json(fold / files.CONFIG)["sizes"]
    teacher_sizes = files.read_json(teacher_fold / files.CONFIG)["sizes"]
    assert math.isfinite(results["fold1"]["test"]["ccc_valence"])
    if not unlabelled:
        assert note["unlabelled_used"] == 0 and sizes == teacher_sizes
        return
    assert 0 < note["unlabelled_used"] == len(expected)
    assert sizes["train"] == teacher_sizes["train"] + len(expected) and sizes["test"] == teacher_sizes["test"]
    labels = pd.read_csv(teacher_fold / CROSSFIT / "unlabelled-2mc.csv", dtype={"id": str})
    assert set(labels["id"]) == set(expected["id"])
    values = labels[["value_0", "value_1", "value_2"]].to_numpy()  # teacher's A/V/D on the manifest scale
    assert np.isfinite(values).all() and values.std(axis=0).min() > 0


def test_another_crossfit_parts_trains_its_own_part_heads_beside_the_first(workspace):
    """--crossfit-parts 3 after 2 failed: part0 "holds a run with a different configuration"."""
    work, _, teacher_dir = workspace
    for parts in (2, 3):
        settings = DistillConfig(quality="none", crossfit_parts=parts, mc_samples=2)
        _, results = run_distillation(work, teacher_dir, "linear", settings, "1", device="cpu",
                                      out=work / f"parts-{parts}", epochs=2)
        assert math.isfinite(results["fold1"]["test"]["ccc_valence"])
        crossfit = teacher_dir / "fold1" / CROSSFIT
        assert sorted(p.name for p in (crossfit / f"{parts}parts").iterdir()) == [f"part{j}" for j in range(parts)]
        assert len(pd.read_csv(crossfit / f"oof-{parts}parts-2mc.csv")) == files.read_json(
            teacher_dir / "fold1" / files.CONFIG)["sizes"]["train"]  # every training utterance, once


def test_a_student_fold_another_process_trains_is_refused_before_distill_json(workspace, held_by_another_process):
    work, _, teacher_dir = workspace
    out = work / "busy-student"
    pid = held_by_another_process(out / "fold1").pid
    with pytest.raises(OutputBusyError, match=f"is being written by process {pid} "):
        run_distillation(work, teacher_dir, "linear", DistillConfig(quality="none", crossfit_parts=2, mc_samples=2),
                         "1", device="cpu", out=out, epochs=2)
    assert not (out / "fold1").exists()


def test_categorical_students_learn_soft_labels_of_unlabelled_utterances(tmp_path):
    corpus = prepare_synthetic(tmp_path / "data", speakers=4, sessions=2, per_class=3, seed=2)
    corpus.loc[corpus.index % 3 == 0, "label"] = None  # a third of the utterances without a category
    _, text_model = synthetic_text_workspace(tmp_path, corpus, hidden_size=32)
    quick = dict(QUICK, task="categorical")
    teacher_dir, _ = run_teacher_training(tmp_path, TrainConfig.create(TEACHER_HEAD, seed=0, **quick), text_model,
                                          "1", device="cpu")
    settings = DistillConfig(quality="agreement", crossfit_parts=2, mc_samples=2, unlabelled=True)
    student_dir, results = run_distillation(tmp_path, teacher_dir, "linear", settings, "1", device="cpu", epochs=2)
    note = files.read_json(student_dir / "fold1" / DISTILL)
    assert note["unlabelled_used"] > 0 and 0 <= results["fold1"]["test"]["ua"] <= 1
    labels = pd.read_csv(teacher_dir / "fold1" / CROSSFIT / "unlabelled-2mc.csv", dtype={"id": str})
    probabilities = labels[[f"value_{k}" for k in range(4)]].to_numpy()  # (N, 4) teacher class probabilities
    assert len(labels) == note["unlabelled_used"] and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
