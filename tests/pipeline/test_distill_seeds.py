"""On the synthetic corpus (valence carried by the transcript's words, weakly by the audio), over
several seeds: the audio + text teacher beats the audio-only model on valence CCC by a wide margin,
and, in this one setting, the distilled audio-only students recover a small part of that gap.
Real caches, real heads, real trainer.

Measured (fold 1 = one speaker's session, 30 epochs, standardised fbank, 64-dim tiny text encoder so
that its 37 word embeddings are linearly separable; test valence CCC mean over seeds 0-2):
audio-only -0.201, teacher 0.422, unconditioned student -0.128, mc-dropout student -0.171.
The teacher's lead holds everywhere we looked; the students' valence gain does not: with the
ablation script's corpus (8 speakers, 8 clips per class) on fold 1 they do not gain (audio-only
0.170, students 0.121-0.163), and with noisy "rater" labels (latent + N(0, 0.5)) on fold 2 they
lose (audio-only 0.574, students 0.41-0.52); only with heavy rater noise (σ 1.0) did the
unconditioned student close ~25% of the gap (fold 1: 0.150 -> 0.221 vs teacher 0.418). So the
student bar below is a regression check of this setting, not evidence that distillation helps
valence in general. ~40 s on 1 core."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser.features.backbones import load_backbone
from ser.features.extract import extract
from ser.features.text_backbones import save_tiny_text_model
from ser.pipeline import run_dir as files
from ser.pipeline.corpora.synthetic import prepare_synthetic
from ser.pipeline.distill import CROSSFIT, DISTILL, DistillConfig
from ser.pipeline.distill_ablation import ablation_runs, ablation_table
from ser.pipeline.manifest import manifest_sha256, read_manifest, utterance_records, write_manifest
from ser.pipeline.text_extraction import run_text_extraction

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    work = tmp_path_factory.mktemp("distill")
    manifest = write_manifest(prepare_synthetic(work / "data", speakers=4, sessions=4, per_class=10, seed=0),
                              work / "manifests" / "synthetic.csv")
    df = read_manifest(manifest)
    extract(utterance_records(df, manifest), load_backbone("fbank"), work / "cache" / "synthetic" / "fbank.h5",
            manifest_sha256=manifest_sha256(df))
    save_tiny_text_model(work / "tinybert", list(df["text"]), hidden_size=64)
    run_text_extraction(work, str(work / "tinybert"))
    settings = DistillConfig(mc_samples=3)
    runs = ablation_runs(work, str(work / "tinybert"), SEEDS, head="linear", which="1",
                         estimates=("none", "mc-dropout"), settings=settings, device="cpu", epochs=30, lr=3e-3,
                         standardize=True)
    return work, runs


def mean_valence(runs, system_prefix):
    chosen = runs[runs["system"].str.startswith(system_prefix)]
    assert len(chosen) == len(SEEDS)
    return chosen["ccc_valence"].mean()


def test_teacher_beats_audio_only_on_valence_and_students_close_part_of_the_gap(ablation):
    _, runs = ablation
    audio = mean_valence(runs, "audio-only")
    teacher = mean_valence(runs, "teacher")
    plain = mean_valence(runs, "student (linear, unconditioned")
    conditioned = mean_valence(runs, "student (linear, conditioned: mc-dropout")
    print(ablation_table(runs))
    assert teacher > audio + 0.1
    assert max(plain, conditioned) > audio + 0.05 * (teacher - audio)  # a (small) part of the gap
    assert max(plain, conditioned) < teacher


def test_student_runs_have_the_run_directory_contract_and_an_honest_teacher(ablation):
    work, runs = ablation
    student = Path(runs[runs["system"].str.contains("mc-dropout")]["run_dir"].iloc[0]) / "fold1"
    metrics = files.read_json(student / files.METRICS)
    assert {"ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean", "mse"} <= set(metrics["test"])
    note = files.read_json(student / DISTILL)
    assert note["quality"] == "mc-dropout" and 0 < note["mean_weight_valence"] < 0.5
    teacher_fold = Path(note["teacher_fold_dir"])
    outer = files.read_json(teacher_fold / files.CONFIG)["sizes"]
    test_ids = set(pd.read_csv(teacher_fold / files.PREDICTIONS, dtype={"id": str})["id"])
    parts = sorted((teacher_fold / CROSSFIT).glob("part*"))
    assert len(parts) == 3
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
