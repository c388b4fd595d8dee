"""IEMOCAP recipe on a small fake tree in the real layout (EmoEvaluation + transcriptions + wavs)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data.corpora import CORPORA, prepare_corpus
from ser.data.corpora.iemocap import prepare_iemocap
from ser.data.manifest import read_manifest
from ser.errors import CorpusError

UTTERANCES = {  # id: (code, [valence, activation, dominance])
    "Ses01F_impro01_F000": ("neu", [2.5, 2.5, 2.5]),
    "Ses01F_impro01_M001": ("exc", [4.0, 3.5, 3.0]),
    "Ses01F_impro01_F002": ("fru", [2.0, 3.0, 3.5]),
    "Ses01M_script01_1_M000": ("ang", [1.5, 4.0, 4.5]),
    "Ses01M_script01_1_F001": ("xxx", [3.0, 3.0, 3.0]),
    "Ses02F_impro03_F000": ("sad", [1.5, 1.5, 2.0]),
    "Ses02F_impro03_M001": ("hap", [4.5, 3.0, 3.0]),
    "Ses02M_script02_2_M000": ("sad", [2.0, 2.0, 2.0]),
}
MISSING_WAV = "Ses02M_script02_2_M000"


def write_wav(path: Path, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(0).normal(0, 0.1, int(16000 * seconds)), 16000)


def build_tree(root: Path) -> Path:
    dialogs: dict[tuple[str, str], list[str]] = {}
    for utt in UTTERANCES:
        dialogs.setdefault((f"Session{int(utt[3:5])}", utt.rsplit("_", 1)[0]), []).append(utt)
    for (session, dialog), utts in dialogs.items():
        evaluation = root / session / "dialog" / "EmoEvaluation"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        transcript = []
        for i, utt in enumerate(utts):
            code, vad = UTTERANCES[utt]
            lines += [
                f"[{1.5 * i:.4f} - {1.5 * i + 1.2:.4f}]\t{utt}\t{code}\t[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]",
                "C-E1:\tNeutral;\t()",
                "",
            ]
            transcript.append(f"{utt} [{1.5 * i:08.4f}-{1.5 * i + 1.2:08.4f}]: words of {utt}.")
            if utt != MISSING_WAV:
                write_wav(root / session / "sentences" / "wav" / dialog / f"{utt}.wav")
        evaluation.mkdir(parents=True, exist_ok=True)
        (evaluation / f"{dialog}.txt").write_text("\n".join(lines))
        (evaluation / f"._{dialog}.txt").write_text("\x00\x05junk")  # macOS shadow file: skipped
        (evaluation / "Categorical").mkdir(exist_ok=True)  # sub-folders hold per-annotator files: skipped
        (evaluation / "Categorical" / f"{dialog}_e1_cat.txt").write_text(f"{utts[0]} :Anger; ()\n")
        transcriptions = root / session / "dialog" / "transcriptions"
        transcriptions.mkdir(parents=True, exist_ok=True)
        (transcriptions / f"{dialog}.txt").write_text("\n".join(transcript + ["M: [BREATHING]"]))
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("IEMOCAP_full_release"))


def test_four_classes_merge_excited_into_happy(root):
    df = prepare_iemocap(root).set_index("id")
    assert sorted(df.index) == sorted(u for u, (c, _) in UTTERANCES.items() if c in ("neu", "exc", "hap", "ang", "sad"))
    assert df.loc["Ses01F_impro01_M001", "label"] == "happy"  # exc → hap
    assert df.loc["Ses02F_impro03_M001", "label"] == "happy"
    assert df.loc["Ses01M_script01_1_M000", "label"] == "angry"
    assert set(df["label"]) == {"neutral", "happy", "angry", "sad"}


def test_speakers_sessions_dimensions_and_text(root):
    df = prepare_iemocap(root, classes="all").set_index("id")
    row = df.loc["Ses01F_impro01_M001"]
    assert (row["speaker"], row["session"], row["gender"]) == ("Ses01M", "Ses01", "M")
    assert (row["valence"], row["arousal"], row["dominance"]) == (4.0, 3.5, 3.0)
    assert row["text"] == "words of Ses01F_impro01_M001."
    assert row["path"].endswith("Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M001.wav")
    assert df.loc["Ses01M_script01_1_F001", "speaker"] == "Ses01F"
    assert df.loc["Ses01F_impro01_M001", "label"] == "excited"  # all: exc stays distinct
    assert df.loc["Ses01F_impro01_F002", "label"] == "frustrated"
    assert df["label"].isna().sum() == 1  # xxx: kept without a label for dimensional work
    assert set(df["corpus"]) == {"iemocap"}


def test_five_classes_and_improvised_only(root):
    five = prepare_iemocap(root, classes="5")
    assert "frustrated" in set(five["label"]) and len(five) == 7
    improvised = prepare_iemocap(root, improvised_only=True)
    assert improvised["id"].str.contains("_impro").all() and len(improvised) == 4


def test_missing_wavs_are_excluded_listed_and_counted(root, tmp_path):
    out = tmp_path / "manifests" / "iemocap.csv"
    result = prepare_corpus(CORPORA.get("iemocap"), root, out, {})
    assert [e.id for e in result.excluded] == [MISSING_WAV]
    assert result.excluded[0].reason == f"file not found: {result.excluded[0].path}"  # extract's own wording
    listed = (tmp_path / "manifests" / "iemocap.missing.txt").read_text()
    assert MISSING_WAV in listed
    df = read_manifest(out)
    assert MISSING_WAV not in set(df["id"]) and len(df) == 5
    assert (df["duration"] == 0.2).all()


def test_unknown_code_and_wrong_root_are_refused(root, tmp_path):
    with pytest.raises(CorpusError, match="expected folders Session1"):
        prepare_iemocap(tmp_path)
    bad = build_tree(tmp_path / "bad")
    file = next((bad / "Session1" / "dialog" / "EmoEvaluation").glob("Ses01F*.txt"))
    file.write_text(file.read_text().replace("\tneu\t", "\tzzz\t"))
    with pytest.raises(CorpusError, match="unknown label code 'zzz'") as error:
        prepare_iemocap(bad)
    assert "neu" in error.value.hint
