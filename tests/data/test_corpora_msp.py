"""MSP-Podcast and MSP-IMPROV recipes on tiny trees with their real label files."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data.corpora import CORPORA, prepare_corpus
from ser.data.corpora.msp import prepare_msp_improv, prepare_msp_podcast
from ser.data.folds import make_folds
from ser.errors import CorpusError


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(1600, 0.01), 16000)


PODCAST_LABELS = """FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.4,127,Female,Train
MSP-PODCAST_0001_0009.wav,H,5.0,5.6,4.8,127,Female,Train
MSP-PODCAST_0002_0001.wav,A,6.0,2.2,5.8,8,Male,Train
MSP-PODCAST_0002_0002.wav,S,2.5,2.0,3.0,8,Male,Train
MSP-PODCAST_0003_0001.wav,X,3.8,3.4,4.0,Unknown,Unknown,Development
MSP-PODCAST_0003_0002.wav,N,4.0,4.2,4.0,40,Male,Development
MSP-PODCAST_0004_0001.wav,S,1.8,2.4,2.6,55,Female,Test1
MSP-PODCAST_0004_0002.wav,H,4.4,5.2,4.0,55,Female,Test1
MSP-PODCAST_0005_0001.wav,A,5.8,1.6,6.0,66,Male,Test2
"""


def podcast_tree(root: Path) -> Path:
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text(PODCAST_LABELS)
    for line in PODCAST_LABELS.splitlines()[1:]:
        name = line.split(",")[0]
        if name != "MSP-PODCAST_0002_0002.wav":  # listed but not on disk
            write_wav(root / "Audios" / name)
    return root


def test_msp_podcast_rows_splits_and_dimensions(tmp_path):
    df = prepare_msp_podcast(podcast_tree(tmp_path)).set_index("id")
    row = df.loc["MSP-PODCAST_0002_0001"]
    assert (row["label"], row["speaker"], row["gender"], row["split"]) == ("angry", "8", "M", "train")
    assert (row["arousal"], row["valence"], row["dominance"]) == (6.0, 2.2, 5.8)
    assert df["split"].value_counts().to_dict() == {"train": 4, "dev": 2, "test": 2, "test2": 1}
    unlabelled = df.loc["MSP-PODCAST_0003_0001"]
    assert unlabelled[["label", "speaker", "gender"]].isna().all()


def test_msp_podcast_predefined_split_folds_and_missing_audio(tmp_path):
    result = prepare_corpus(CORPORA.get("msp-podcast"), podcast_tree(tmp_path), tmp_path / "m" / "msp-podcast.csv", {})
    assert [e.id for e in result.excluded] == ["MSP-PODCAST_0002_0002"]
    folds = {f.name: f for f in make_folds(result.table)}  # default protocol: split
    assert sorted(folds) == ["test", "test2"]
    assert folds["test"].train == ["MSP-PODCAST_0001_0008", "MSP-PODCAST_0001_0009", "MSP-PODCAST_0002_0001"]
    assert folds["test"].dev == ["MSP-PODCAST_0003_0002"]  # the official Development set (labelled rows)
    assert folds["test"].test == ["MSP-PODCAST_0004_0001", "MSP-PODCAST_0004_0002"]
    everything = make_folds(result.table, label_column=None)[0]
    assert "MSP-PODCAST_0003_0001" in everything.dev  # dimensional protocols keep unlabelled rows


def test_msp_podcast_bad_split_and_missing_table(tmp_path):
    root = podcast_tree(tmp_path / "a")
    labels = root / "Labels" / "labels_consensus.csv"
    labels.write_text(labels.read_text().replace("Test2", "Holdout"))
    with pytest.raises(CorpusError, match="unknown Split_Set 'Holdout'"):
        prepare_msp_podcast(root)
    with pytest.raises(CorpusError, match="expected file Labels/labels_consensus.csv is missing"):
        prepare_msp_podcast(tmp_path)


IMPROV_EVALUATION = """UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:4.000000; V:1.500000; D:3.800000 ; N:3.000000;
A-13; Angry; Frustrated; ()
UTD-IMPROV-S01A-M01-R-MM01.avi; N; A:2.600000; V:3.000000; D:3.000000 ; N:5.000000;
UTD-IMPROV-S02H-F02-T-FF02.avi; H; A:3.600000; V:4.400000; D:3.200000 ; N:4.000000;
UTD-IMPROV-S02H-M02-S-MF03.avi; O; A:3.000000; V:3.000000; D:3.000000 ; N:3.000000;
"""


def test_msp_improv_sessions_speakers_and_four_classes(tmp_path):
    (tmp_path / "Evaluation.txt").write_text(IMPROV_EVALUATION)
    for line in IMPROV_EVALUATION.splitlines():
        if line.startswith("UTD"):
            name = line.split(".avi")[0][len("UTD-IMPROV-"):]
            parts = name.split("-")
            write_wav(tmp_path / f"session{int(parts[0][1:3])}" / parts[0] / parts[2] / f"MSP-IMPROV-{name}.wav")
    df = prepare_msp_improv(tmp_path).set_index("id")
    assert len(df) == 3  # "other" is outside the 4-class set
    row = df.loc["MSP-IMPROV-S02H-F02-T-FF02"]
    assert row[["label", "speaker", "session", "gender"]].tolist() == ["happy", "F02", "session2", "F"]
    assert row["valence"] == 4.4
    assert all(Path(p).is_file() for p in df["path"])
    assert len(prepare_msp_improv(tmp_path, classes="all")) == 4
