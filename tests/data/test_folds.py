"""Protocols: no speaker or session in both train and test, dev never overlaps test, seeded splits."""

import pandas as pd
import pytest

from ser.data.fold import unlearnable_class_notes
from ser.data.folds import apply_label_map, cross_corpus_fold, default_scheme, describe_folds, make_folds
from ser.errors import FoldError, UserInputError

LABELS = ("neutral", "happy", "angry", "sad")


def corpus(sessions: int = 3, per_class: int = 5, corpus_name: str | None = None) -> pd.DataFrame:
    """IEMOCAP-like: one female and one male speaker per session, every class for every speaker."""
    rows = []
    for s in range(1, sessions + 1):
        for gender in "FM":
            for label in LABELS:
                for i in range(per_class):
                    rows.append({"id": f"S{s}{gender}_{label}_{i}", "path": "x.wav", "label": label,
                                 "speaker": f"S{s}{gender}", "session": f"S{s}", "arousal": float(i)})
    df = pd.DataFrame(rows)
    return df.assign(corpus=corpus_name) if corpus_name else df


def column_of(df, ids, column):
    return set(df.set_index("id").loc[ids, column])


@pytest.mark.parametrize("scheme, k", [("session", None), ("speaker", None), ("speaker", 2), ("kfold", 4)])
def test_parts_are_disjoint_and_cover_every_labelled_row(scheme, k):
    df = corpus()
    folds = make_folds(df, scheme, k=k, seed=3)
    for fold in folds:
        assert not set(fold.dev) & set(fold.test)
        assert not set(fold.train) & set(fold.test) and not set(fold.train) & set(fold.dev)
        assert len(fold.train) + len(fold.dev) + len(fold.test) == len(df)
    assert sorted(u for f in folds for u in f.test) == sorted(df["id"])  # each row tested exactly once


@pytest.mark.parametrize("scheme, k", [("session", None), ("speaker", None), ("speaker", 3)])
def test_no_speaker_or_session_in_both_train_and_test(scheme, k):
    df = corpus(sessions=4)
    for fold in make_folds(df, scheme, k=k):
        for column in ("speaker", "session") if scheme == "session" else ("speaker",):
            assert not column_of(df, fold.train + fold.dev, column) & column_of(df, fold.test, column)
    assert [f.name for f in make_folds(df, "session")] == ["S1", "S2", "S3", "S4"]


def test_random_dev_is_a_seeded_stratified_fifth_of_training():
    df = corpus(per_class=10)
    fold = make_folds(df, "session", seed=1, dev="random")[0]
    assert len(fold.dev) == 0.2 * (len(fold.train) + len(fold.dev))
    assert df.set_index("id").loc[fold.dev, "label"].value_counts().nunique() == 1  # same count per class
    assert make_folds(df, "session", seed=1, dev="random")[0] == fold
    assert make_folds(df, "session", seed=2, dev="random")[0].dev != fold.dev
    assert make_folds(df, "session", seed=2, dev="random")[0].test == fold.test
    assert fold.dev_split == "random"


def test_speaker_dev_holds_out_whole_training_speakers():
    df = corpus(sessions=4)
    for fold in make_folds(df, "session", dev="speaker"):
        assert not column_of(df, fold.dev, "speaker") & column_of(df, fold.train, "speaker")
        assert not column_of(df, fold.dev, "speaker") & column_of(df, fold.test, "speaker")


def test_a_speaker_in_two_sessions_is_refused():
    df = corpus()
    df.loc[df["id"] == "S2F_sad_0", "speaker"] = "S1F"
    with pytest.raises(FoldError, match="speaker\\(s\\) S1F appear in both training and test"):
        make_folds(df, "session")


def test_kfold_is_stratified_and_labels_are_required():
    df = corpus(per_class=8)
    for fold in make_folds(df, "kfold", k=4):
        assert df.set_index("id").loc[fold.test, "label"].value_counts().to_dict() == {label: 12 for label in LABELS}
    unlabelled = df.assign(label=[None] * 8 + list(df["label"][8:]))
    assert sum(len(f.test) for f in make_folds(unlabelled, "kfold", k=4)) == len(df) - 8
    assert sum(len(f.test) for f in make_folds(unlabelled, "kfold", k=4, label_column=None)) == len(df)
    with pytest.raises(FoldError, match="has no 'emotion' column"):
        make_folds(df, "kfold", label_column="emotion")


def test_a_k_beyond_the_rows_names_the_k_the_user_gave_or_the_default():
    few = corpus(sessions=1, per_class=1).drop(columns=["session", "speaker"])  # 8 rows: kfold by default
    with pytest.raises(FoldError, match="^kfold's default of 10 folds needs 2 <= k <= 8, the number of labelled rows "
                                        "\\(give --k between 2 and 8\\)$"):
        make_folds(few)
    with pytest.raises(FoldError, match="^--folds kfold --k 9 needs 2 <= k <= 8, the number of labelled rows "):
        make_folds(few, "kfold", k=9)
    with pytest.raises(FoldError, match="<= 1, the number of labelled rows \\(label at least 2 rows\\)$"):
        make_folds(few[:1], "kfold", k=2)


def test_default_schemes_and_bad_requests():
    assert default_scheme(corpus()) == "session"
    assert default_scheme(corpus().drop(columns="session")) == "speaker"
    assert default_scheme(corpus().drop(columns=["session", "speaker"])) == "kfold"
    assert default_scheme(corpus(corpus_name="emodb")) == "speaker"  # the corpus's accepted protocol
    assert len(make_folds(corpus(sessions=6, corpus_name="ravdess"))) == 6  # speaker scheme, 6 actor groups
    with pytest.raises(FoldError, match="needs a 'session' value"):
        make_folds(corpus().drop(columns="session"), "session")
    with pytest.raises(UserInputError, match="unknown fold scheme"):
        make_folds(corpus(), "loso")
    with pytest.raises(UserInputError, match="--k applies"):
        make_folds(corpus(), "session", k=3)


def test_cross_corpus_fold_maps_labels_and_refuses_unmapped_ones():
    train = corpus(corpus_name="iemocap")
    test = pd.DataFrame({"id": ["t1", "t2", "t3", "t4"], "path": "y.wav", "corpus": "emodb",
                         "label": ["happiness", "angry", "boredom", "sad"]})
    with pytest.raises(FoldError, match="test labels boredom, happiness are not training labels"):
        cross_corpus_fold(train, test)
    label_map = {"happiness": "happy", "boredom": None}
    fold = cross_corpus_fold(train, test, label_map, seed=0)
    assert fold.name == "iemocap-to-emodb"
    assert fold.test == ["t1", "t2", "t4"]
    assert not set(fold.dev) & set(fold.train) and len(fold.dev) == 20  # one of the 6 speakers: 1/6 ≈ 20%
    assert fold.dev_split == "speaker" and not column_of(train, fold.dev, "speaker") & column_of(train, fold.train, "speaker")
    assert len(cross_corpus_fold(train, test, label_map, dev="random").dev) == 0.2 * len(train)
    assert apply_label_map(test, label_map)["label"].tolist() == ["happy", "angry", "sad"]


def test_describe_folds_counts_test_classes():
    df = corpus(per_class=5)
    summary = describe_folds(df, make_folds(df, "session"))
    assert summary["test"].tolist() == [40, 40, 40]
    assert summary[list(LABELS)].eq(10).all().all()
    assert summary["test speakers"].tolist() == [2, 2, 2]


def test_a_class_that_only_a_test_part_holds_is_named_per_fold():
    """A label found in one session only trained a head with an output no training utterance
    had, and its test UA counted that class's recall as 0 without a word."""
    df = corpus()
    assert unlearnable_class_notes(make_folds(df, "session"), df) == []
    df.loc[(df["session"] == "S1") & (df["label"] == "sad"), "label"] = "bored"
    folds = make_folds(df, "session")
    assert unlearnable_class_notes(folds, df) == [
        "fold S1: no training utterance of bored (10 test utterances): the head cannot learn it, and UA counts "
        "the recall as 0"]
    assert unlearnable_class_notes(folds, df, label_column=None) == []  # dimensional: no classes
