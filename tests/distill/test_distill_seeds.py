"""On the synthetic corpus (valence carried by the transcript's words, weakly by the audio) with
30% of the utterances rated, over 3 seeds and all 4 leave-one-session-out folds: the audio + text
teacher beats the audio-only model on valence CCC, and the students, which also learn the
teacher's labels of the unrated utterances (`ser distill --unlabelled`), close part of that gap.
Real caches, real heads, real trainer.

Measured (linear heads, 15 epochs at lr 4e-3, standardised fbank, 64-dim tiny text encoder; test
valence CCC, mean over folds and seeds 0-2): audio-only 0.154, teacher 0.239, unconditioned and
mc-dropout students 0.224 (about 80% of the gap; with 30 epochs at 2e-3: 0.172, 0.265, 0.233 in
twice the time). This is one setting, not a law: with 50% rated the students do not gain (0.291 →
0.256-0.283, teacher 0.635), nor without unrated utterances (the teacher then adds nothing the
labels lack). ~2 min on one idle core.

Dev is the stratified random 20% these figures were measured with (`dev="random"`). With the
default whole-speaker dev (1 of the 6 training speakers per fold) the teacher's lead shrinks
(test valence CCC, mean over seeds 0-2): audio-only 0.172, teacher 0.198 (the 0.05 margin below
fails on seeds 0 and 2; on seed 2 the teacher is below audio-only), unconditioned student 0.204,
mc-dropout student 0.206."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser.data.corpora.synthetic import prepare_synthetic
from ser.studies.distill_ablation import ablation_runs, ablation_table, synthetic_text_workspace
from ser.training import run_dir as files
from ser.distill.student import CROSSFIT, DISTILL, DistillConfig

SEEDS = [0, 1, 2]
# The fixture trains 84 fold runs: 118 s on an idle core (it ran past 300 s on a busy machine).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    work = tmp_path_factory.mktemp("distill")
    corpus = prepare_synthetic(work / "data", speakers=8, sessions=4, per_class=12, seed=0, rated_share=0.3)
    _, text_model = synthetic_text_workspace(work, corpus, hidden_size=64)
    settings = DistillConfig(unlabelled=True)
    runs = ablation_runs(work, text_model, SEEDS, head="linear", which="all",
                         estimates=("none", "mc-dropout"), settings=settings, device="cpu", epochs=15, lr=4e-3,
                         standardize=True, dev="random")
    return work, runs


def valence(runs, system_prefix) -> np.ndarray:
    """Test valence CCC (mean over the folds) of one system, one value per seed."""
    chosen = runs[runs["system"].str.startswith(system_prefix)].sort_values("seed")
    assert list(chosen["seed"]) == SEEDS and (chosen["folds"] == 4).all()
    return chosen["ccc_valence"].to_numpy()


def test_teacher_beats_audio_only_on_valence_and_students_close_part_of_the_gap(ablation):
    _, runs = ablation
    audio, teacher = valence(runs, "audio-only"), valence(runs, "teacher")
    print(ablation_table(runs))
    assert (teacher > audio + 0.05).all()  # every seed
    for student in ("student (linear, unconditioned", "student (linear, conditioned: mc-dropout"):
        gained = valence(runs, student)
        assert (gained > audio).all()  # every seed
        assert gained.mean() - audio.mean() > 0.25 * (teacher.mean() - audio.mean())  # measured ~55%
        assert gained.mean() < teacher.mean()


def test_student_runs_have_the_run_directory_contract_and_an_honest_teacher(ablation):
    work, runs = ablation
    student = Path(runs[runs["system"].str.contains("mc-dropout")]["run_dir"].iloc[0]) / "fold1"
    metrics = files.read_json(student / files.METRICS)
    assert {"ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean", "mse"} <= set(metrics["test"])
    note = files.read_json(student / DISTILL)
    assert note["quality"] == "mc-dropout" and 0 < note["mean_weight_valence"] < 0.5
    assert note["unlabelled_used"] > 0
    teacher_fold = Path(note["teacher_fold_dir"])
    outer = files.read_json(teacher_fold / files.CONFIG)["sizes"]
    test_ids = set(pd.read_csv(teacher_fold / files.PREDICTIONS, dtype={"id": str})["id"])
    parts = sorted((teacher_fold / CROSSFIT / f"{note['crossfit_parts']}parts").glob("part*"))
    assert note["crossfit_parts"] == len(parts) == 3
    for part in parts:
        config = files.read_json(part / files.CONFIG)
        assert config["head"] == "multimodal" and config["text_model"]
        inner = config["sizes"]  # inner train + held-out part = the fold's training part; same dev
        assert inner["train"] + inner["test"] == outer["train"] and inner["dev"] == outer["dev"]
        held_out = set(pd.read_csv(part / files.PREDICTIONS, dtype={"id": str})["id"])
        assert not held_out & test_ids  # cross-fitted teachers never touch the fold's test utterances
    table = ablation_table(runs)
    assert table.count("\n") == 2 + 4 and "teacher (audio + text)" in table
    assert np.isfinite(runs[["ccc_arousal", "ccc_valence", "ccc_dominance"]].to_numpy()).all()


def test_a_system_of_one_seed_shows_its_value_without_a_nan_spread():
    from ser.studies.distill_ablation import METRICS

    runs = pd.DataFrame([{"system": "student", "seed": 0, **{name: 0.41 for name in METRICS}}])
    table = ablation_table(runs)
    assert "| student | 0.410 | 0.410 | 0.410 | 0.410 | 1 |" in table, table  # was `0.410 ± nan`
