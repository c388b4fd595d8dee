"""Acted corpora whose labels live in file names, each on a tiny tree in its real layout."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data.corpora import CORPORA, prepare_corpus
from ser.data.corpora.acted import prepare_crema_d, prepare_ravdess, prepare_savee, prepare_tess
from ser.data.corpora.acted_world import prepare_casia, prepare_emodb, prepare_emovo
from ser.errors import CorpusError


def write_wav(path: Path, seconds: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(16000 * seconds), 0.01), 16000)
    return path


def by_id(df):
    return df.set_index("id")


def test_ravdess_speech_files_actors_and_gender(tmp_path):
    write_wav(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav")
    write_wav(tmp_path / "Actor_02" / "03-01-02-01-02-02-02.wav")
    write_wav(tmp_path / "Actor_02" / "03-02-03-01-01-01-02.wav")  # song: not speech
    df = by_id(prepare_ravdess(tmp_path))
    assert sorted(df.index) == ["03-01-02-01-02-02-02", "03-01-05-02-01-01-01"]
    assert df.loc["03-01-05-02-01-01-01", ["label", "speaker", "gender"]].tolist() == ["angry", "actor01", "M"]
    assert df.loc["03-01-02-01-02-02-02", ["label", "speaker", "gender"]].tolist() == ["calm", "actor02", "F"]
    write_wav(tmp_path / "Actor_03" / "03-01-09-01-01-01-03.wav")
    with pytest.raises(CorpusError, match="unknown label code '09'"):
        prepare_ravdess(tmp_path)


def test_savee_nested_and_flat_layouts(tmp_path):
    write_wav(tmp_path / "nested" / "AudioData" / "DC" / "a01.wav")
    write_wav(tmp_path / "nested" / "AudioData" / "KL" / "sa15.wav")
    write_wav(tmp_path / "flat" / "JE_su03.wav")
    write_wav(tmp_path / "flat" / "JK_n21.wav")
    nested = by_id(prepare_savee(tmp_path / "nested"))
    assert nested.loc["DC_a01", ["label", "speaker"]].tolist() == ["angry", "DC"]
    assert nested.loc["KL_sa15", "label"] == "sad"
    flat = by_id(prepare_savee(tmp_path / "flat"))
    assert flat.loc["JE_su03", ["label", "speaker", "gender"]].tolist() == ["surprise", "JE", "M"]
    write_wav(tmp_path / "flat" / "notes.wav")
    with pytest.raises(CorpusError, match="1 audio file.*naming pattern"):
        prepare_savee(tmp_path / "flat")


def test_crema_d_with_demographics_and_an_empty_file(tmp_path):
    write_wav(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    write_wav(tmp_path / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    sf.write(tmp_path / "AudioWAV" / "1002_TIE_SAD_XX.wav", np.zeros(0), 16000)  # known-empty clip
    (tmp_path / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n"
    )
    df = by_id(prepare_crema_d(tmp_path))
    assert df.loc["1001_DFA_ANG_XX", ["label", "speaker", "gender"]].tolist() == ["angry", "1001", "M"]
    assert df.loc["1002_IEO_HAP_HI", "gender"] == "F"
    result = prepare_corpus(CORPORA.get("crema-d"), tmp_path, tmp_path / "m" / "crema-d.csv", {})
    assert [(e.id, e.reason) for e in result.excluded] == [("1002_TIE_SAD_XX", "empty")]
    assert len(result.table) == 2
    with pytest.raises(CorpusError, match="expected folder AudioWAV/"):
        prepare_crema_d(tmp_path / "AudioWAV")


def test_tess_speakers_and_pleasant_surprise(tmp_path):
    write_wav(tmp_path / "OAF_angry" / "OAF_back_angry.wav")
    write_wav(tmp_path / "YAF_pleasant_surprised" / "YAF_youth_ps.wav")
    df = by_id(prepare_tess(tmp_path))
    assert df.loc["OAF_back_angry", ["label", "speaker"]].tolist() == ["angry", "OAF"]
    assert df.loc["YAF_youth_ps", ["label", "speaker", "gender"]].tolist() == ["surprise", "YAF", "F"]


def test_emodb_codes_and_speakers(tmp_path):
    write_wav(tmp_path / "wav" / "03a01Fa.wav")
    write_wav(tmp_path / "wav" / "16b10Lb.wav")
    df = by_id(prepare_emodb(tmp_path))
    assert df.loc["03a01Fa", ["label", "speaker", "gender"]].tolist() == ["happy", "03", "M"]
    assert df.loc["16b10Lb", ["label", "speaker", "gender"]].tolist() == ["boredom", "16", "F"]
    with pytest.raises(CorpusError, match="expected folder wav/ is missing"):
        prepare_emodb(tmp_path / "wav")
    write_wav(tmp_path / "wav" / "03a01Xa.wav")
    with pytest.raises(CorpusError, match="unknown label code 'X'"):
        prepare_emodb(tmp_path)


def test_emovo_and_casia(tmp_path):
    write_wav(tmp_path / "emovo" / "f1" / "gio-b1-f1.wav")
    write_wav(tmp_path / "emovo" / "m3" / "rab-l2-m3.wav")
    emovo = by_id(prepare_emovo(tmp_path / "emovo"))
    assert emovo.loc["gio-b1-f1", ["label", "speaker", "gender"]].tolist() == ["happy", "f1", "F"]
    assert emovo.loc["rab-l2-m3", ["label", "speaker", "gender"]].tolist() == ["angry", "m3", "M"]
    write_wav(tmp_path / "casia" / "CASIA" / "liuchang" / "angry" / "201.wav")
    write_wav(tmp_path / "casia" / "CASIA" / "wangzhe" / "surprise" / "201.wav")
    casia = by_id(prepare_casia(tmp_path / "casia"))
    assert casia.loc["liuchang_angry_201", ["label", "speaker", "gender"]].tolist() == ["angry", "liuchang", "F"]
    assert casia.loc["wangzhe_surprise_201", ["label", "gender"]].tolist() == ["surprise", "M"]
    write_wav(tmp_path / "casia" / "CASIA" / "wangzhe" / "bored" / "202.wav")
    with pytest.raises(CorpusError, match="naming pattern"):
        prepare_casia(tmp_path / "casia")


def test_a_root_without_audio_names_the_expected_pattern(tmp_path):
    with pytest.raises(CorpusError, match="no audio file matches Actor_XX"):
        prepare_ravdess(tmp_path)
