"""The synthetic corpus: real audio, deterministic, learnable but not trivial, V/A/D and text cues."""

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers.audio_utils import mel_filter_bank

from ser.data.corpora.synthetic import NEGATIVE_WORDS, POSITIVE_WORDS, prepare_synthetic
from ser.errors import UserInputError

MEL = mel_filter_bank(
    num_frequency_bins=201, num_mel_filters=40, min_frequency=20, max_frequency=8000, sampling_rate=16000
)  # (201, 40)


def log_mel_stats(path: str) -> np.ndarray:
    """Per-utterance mean and std of a 40-band log-mel (25 ms window, 10 ms hop)."""
    audio, _ = sf.read(path)
    frames = np.lib.stride_tricks.sliding_window_view(audio, 400)[::160] * np.hanning(400)  # (T, 400)
    log_mel = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ MEL + 1e-8)  # (T, 40)
    return np.concatenate([log_mel.mean(0), log_mel.std(0)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    df = prepare_synthetic(tmp_path_factory.mktemp("synthetic"), speakers=8, sessions=4, per_class=8, seed=0)
    features = np.stack([log_mel_stats(p) for p in df["path"]])
    return df, features


def test_layout_speakers_sessions_and_audio(corpus):
    df, _ = corpus
    assert len(df) == 8 * 4 * 8
    assert df["label"].value_counts().to_dict() == {"neutral": 64, "happy": 64, "angry": 64, "sad": 64}
    assert df.groupby("session")["speaker"].nunique().to_dict() == {f"Ses0{s}": 2 for s in range(1, 5)}
    assert set(df.groupby("session")["gender"].agg(lambda g: "".join(sorted(set(g))))) == {"FM"}
    info = sf.info(df["path"].iloc[0])
    assert info.samplerate == 16000 and info.channels == 1
    assert df["duration"].between(1.0, 2.5).all()
    assert df[["arousal", "valence", "dominance"]].stack().between(1, 5).all()


def test_same_seed_same_audio_other_seed_other_audio(tmp_path):
    first = prepare_synthetic(tmp_path / "a", speakers=2, sessions=1, per_class=1, seed=5)
    again = prepare_synthetic(tmp_path / "b", speakers=2, sessions=1, per_class=1, seed=5)
    other = prepare_synthetic(tmp_path / "c", speakers=2, sessions=1, per_class=1, seed=6)
    audio = [sf.read(p)[0] for p in first["path"]]
    assert all(np.array_equal(a, sf.read(p)[0]) for a, p in zip(audio, again["path"]))
    assert first.drop(columns="path").equals(again.drop(columns="path"))
    assert not np.array_equal(audio[0], sf.read(other["path"].iloc[0])[0])
    with pytest.raises(UserInputError, match="--sessions"):
        prepare_synthetic(tmp_path / "d", speakers=2, sessions=3)


def test_worker_processes_make_the_same_corpus(tmp_path):
    alone = prepare_synthetic(tmp_path / "a", speakers=2, sessions=1, per_class=3, seed=4, rater_noise=0.5,
                              rated_share=0.6)
    shared = prepare_synthetic(tmp_path / "b", speakers=2, sessions=1, per_class=3, seed=4, rater_noise=0.5,
                               rated_share=0.6, jobs=3)
    assert list(shared.columns) == list(alone.columns)
    assert shared.drop(columns="path").equals(alone.drop(columns="path"))
    assert all(np.array_equal(sf.read(p)[0], sf.read(q)[0]) for p, q in zip(alone["path"], shared["path"]))
    with pytest.raises(UserInputError, match="--jobs"):
        prepare_synthetic(tmp_path / "c", speakers=2, sessions=1, per_class=1, jobs=0)


def test_rater_noise_changes_only_the_ratings(tmp_path):
    latent = prepare_synthetic(tmp_path / "a", speakers=2, sessions=1, per_class=6, seed=3)
    rated = prepare_synthetic(tmp_path / "b", speakers=2, sessions=1, per_class=6, seed=3, rater_noise=1.0)
    dimensions = ["valence", "arousal", "dominance"]
    assert all(np.array_equal(sf.read(p)[0], sf.read(q)[0]) for p, q in zip(latent["path"], rated["path"]))
    assert rated.drop(columns=["path", *dimensions]).equals(latent.drop(columns=["path", *dimensions]))
    error = (rated[dimensions] - latent[dimensions]).to_numpy()  # (48, 3) noise, clipped at 1 and 5
    assert rated[dimensions].stack().between(1, 5).all()
    assert 0.7 < error.std() < 1.1 and abs(error.mean()) < 0.25
    with pytest.raises(UserInputError, match="--rater-noise"):
        prepare_synthetic(tmp_path / "c", speakers=2, sessions=1, per_class=1, rater_noise=-0.5)


def test_a_rated_share_leaves_the_other_utterances_without_ratings(tmp_path):
    latent = prepare_synthetic(tmp_path / "a", speakers=2, sessions=1, per_class=10, seed=3)
    partly = prepare_synthetic(tmp_path / "b", speakers=2, sessions=1, per_class=10, seed=3, rated_share=0.4)
    dimensions = ["valence", "arousal", "dominance"]
    rated = partly[dimensions].notna().all(axis=1)
    assert partly[dimensions].notna().any(axis=1).equals(rated)  # all three or none
    assert 0.2 < rated.mean() < 0.6
    assert partly.loc[rated, dimensions].equals(latent.loc[rated, dimensions])
    assert partly[["label", "text"]].equals(latent[["label", "text"]])
    with pytest.raises(UserInputError, match="--rated-share"):
        prepare_synthetic(tmp_path / "c", speakers=2, sessions=1, per_class=1, rated_share=0)


def test_a_linear_probe_is_above_chance_and_below_perfect(corpus):
    df, features = corpus
    labels, sessions = df["label"].to_numpy(), df["session"].to_numpy()
    scores = []
    for held_out in sorted(set(sessions)):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(features[sessions != held_out], labels[sessions != held_out])
        test = sessions == held_out
        scores.append(balanced_accuracy_score(labels[test], probe.predict(features[test])))
    assert 0.4 < np.mean(scores) < 0.95


def test_audio_carries_arousal_strongly_and_valence_weakly(corpus):
    df, features = corpus
    correlation = {}
    for dimension in ("arousal", "valence"):
        predicted = cross_val_predict(make_pipeline(StandardScaler(), Ridge(alpha=10.0)), features, df[dimension],
                                      groups=df["session"], cv=GroupKFold(4))
        correlation[dimension] = np.corrcoef(predicted, df[dimension])[0, 1]
    assert correlation["arousal"] > 0.7
    assert correlation["valence"] < correlation["arousal"] - 0.25


def test_transcripts_carry_valence_beyond_the_class(corpus):
    df, _ = corpus
    sentiment = np.array([sum(w in POSITIVE_WORDS for w in t.split()) - sum(w in NEGATIVE_WORDS for w in t.split())
                          for t in df["text"]])
    assert np.corrcoef(sentiment, df["valence"])[0, 1] > 0.5
    happy = df["label"].to_numpy() == "happy"
    assert np.corrcoef(sentiment[happy], df["valence"][happy])[0, 1] > 0.2  # within a class, too
    assert df["text"].nunique() > 0.9 * len(df)
