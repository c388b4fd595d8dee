"""The default dev split (`--dev auto`): whole training speakers wherever a fold's training part has
at least 4 of them, in every fold scheme of the recipes that have speakers; rows otherwise, said so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser.data.corpora.synthetic import prepare_synthetic
from ser.data.emobox import emobox_folds
from ser.data.fold import MIN_DEV_SPEAKERS, dev_split_notes
from ser.data.folds import full_data_fold, make_folds
from ser.data.held_out_speakers import SHARE_TOLERANCE, held_out_speakers

LABELS = ("neutral", "happy", "angry", "sad")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> pd.DataFrame:
    """The synthetic corpus's manifest rows: 8 speakers in 4 sessions, 2 clips per class each."""
    return prepare_synthetic(tmp_path_factory.mktemp("synthetic"), speakers=8, sessions=4, per_class=2)


def recipe_rows(corpus: str, speakers: int, per_class: int = 3) -> pd.DataFrame:
    """A small manifest of a recipe's corpus (its default protocol comes from the `corpus` column);
    speakers hold different numbers of clips, so shares are not all equal."""
    rows = []
    for s in range(speakers):
        for label in LABELS:
            for i in range(per_class + s % 3):
                rows.append({"id": f"{corpus}{s:02d}_{label}_{i}", "path": "x.wav", "label": label,
                             "speaker": f"{s:02d}", "corpus": corpus})
    return pd.DataFrame(rows)


def write_emobox(root: Path, df: pd.DataFrame, groups: int) -> Path:
    """EmoBox files (train/test only: dev is drawn) for `groups` speaker-disjoint folds."""
    speakers = sorted(df["speaker"].unique())
    for k in range(1, groups + 1):
        test_speakers = speakers[k - 1 :: groups]
        fold_dir = root / "toy" / f"fold_{k}"
        fold_dir.mkdir(parents=True)
        for part, rows in (("train", df[~df["speaker"].isin(test_speakers)]), ("test", df[df["speaker"].isin(test_speakers)])):
            lines = [{"key": f"toy-{row.id}", "dataset": "toy", "wav": f"downloads/toy/{row.id}.wav", "emo": row.label}
                     for row in rows.itertuples()]
            (fold_dir / f"toy_{part}_fold_{k}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root / "toy"


def assert_speaker_dev(df: pd.DataFrame, folds) -> None:
    """Every fold's dev is whole speakers: none of them trains or tests, ≈20% of the training part
    (within the tolerance where some set of speakers allows it), every class in dev and in train."""
    table = df.set_index("id")
    assert folds
    for fold in folds:
        speakers = {part: set(table.loc[getattr(fold, part), "speaker"]) for part in ("train", "dev", "test")}
        assert fold.dev_split == "speaker", fold
        assert len(speakers["train"] | speakers["dev"]) >= MIN_DEV_SPEAKERS
        assert not speakers["dev"] & speakers["train"], f"fold {fold.name}: a dev speaker trains"
        assert not speakers["dev"] & speakers["test"]
        share = len(fold.dev) / (len(fold.dev) + len(fold.train))
        assert 0.1 <= share <= 0.3, (fold.name, share)  # e.g. 1 of 7 equal speakers: 14%, the closest to 20%
        for part in ("train", "dev"):
            assert set(table.loc[getattr(fold, part), "label"]) == set(LABELS), (fold.name, part)


@pytest.mark.parametrize("scheme, k", [("session", None), ("speaker", None), ("speaker", 2), ("speaker", 4)])
def test_synthetic_corpus_dev_never_holds_a_training_speaker(synthetic, scheme, k):
    folds = make_folds(synthetic, scheme, k=k, seed=3)
    assert_speaker_dev(synthetic, folds)
    assert make_folds(synthetic, scheme, k=k, seed=3) == folds  # seeded
    assert dev_split_notes(folds) == []


def test_the_synthetic_default_protocol_and_the_full_data_fold_use_speaker_dev(synthetic):
    assert_speaker_dev(synthetic, make_folds(synthetic))  # leave-one-session-out: 6 training speakers
    full = full_data_fold(synthetic, seed=1)
    table = synthetic.set_index("id")
    assert full.dev_split == "speaker" and not full.test
    assert not set(table.loc[full.dev, "speaker"]) & set(table.loc[full.train, "speaker"])


@pytest.mark.parametrize("corpus, speakers, folds", [("ased", 12, 5), ("turev", 6, 6)])
def test_recipe_protocols_hold_out_whole_speakers(corpus, speakers, folds):
    """ASED: 5 speaker-disjoint folds; TurEV-DB: leave-one-speaker-out (5 training speakers)."""
    df = recipe_rows(corpus, speakers)
    made = make_folds(df)
    assert len(made) == folds
    assert_speaker_dev(df, made)


def test_emobox_folds_without_a_valid_file_draw_whole_speakers(tmp_path):
    df = recipe_rows("toy", 10)
    protocol = emobox_folds(df, write_emobox(tmp_path, df, groups=2))
    assert_speaker_dev(df, protocol.folds)


def test_too_few_training_speakers_and_kfold_draw_rows_and_say_so(synthetic):
    few = prepare_rows_with_speakers(synthetic, keep=4)  # 4 speakers in 4 sessions: 3 train each fold
    folds = make_folds(few, "session")
    assert {fold.dev_split for fold in folds} == {"random (3 training speakers < 4)"}
    assert dev_split_notes(folds) == [(f"dev split of folds {', '.join(f.name for f in folds)}: "
                                       "random (3 training speakers < 4)")]
    kfold = make_folds(synthetic, "kfold", k=4)
    assert {fold.dev_split for fold in kfold} == {"random (kfold: test shares the training speakers)"}
    assert {fold.dev_split for fold in make_folds(synthetic, "session", dev="random")} == {"random"}
    assert {fold.dev_split for fold in make_folds(synthetic.drop(columns="speaker"), "session")} == {
        "random (no speaker on every training utterance)"}


def prepare_rows_with_speakers(df: pd.DataFrame, keep: int) -> pd.DataFrame:
    """The first speaker of each session, up to `keep` speakers."""
    firsts = df.groupby("session")["speaker"].first().head(keep)
    return df[df["speaker"].isin(set(firsts))].reset_index(drop=True)


def test_held_out_speakers_is_seeded_and_covers_every_class():
    speakers = np.repeat([f"s{i}" for i in range(10)], 8)
    labels = np.tile(np.repeat(["a", "b", "c", "d"], 2), 10)
    first = held_out_speakers(speakers, labels, 0.2, seed=0)
    assert first.covers and abs(first.share - 0.2) < 1e-9 and len(first.speakers) == 2
    uneven = np.repeat([f"s{i}" for i in range(6)], [30, 10, 10, 20, 20, 10])  # 100 rows
    for seed in range(10):  # some speaker set within 15-25% exists for every seed's draws
        drawn = held_out_speakers(uneven, None, 0.2, seed)
        assert drawn.covers and abs(drawn.share - 0.2) <= SHARE_TOLERANCE * 0.2 + 1e-9
    assert held_out_speakers(speakers, labels, 0.2, seed=0).speakers == first.speakers
    assert any(held_out_speakers(speakers, labels, 0.2, seed=s).speakers != first.speakers for s in range(1, 5))
    one_speaker_class = labels.copy()
    one_speaker_class[speakers == "s3"] = "e"  # only s3 speaks class e: no set covers it in dev and train
    drawn = held_out_speakers(speakers, one_speaker_class, 0.2, seed=0)
    assert not drawn.covers
