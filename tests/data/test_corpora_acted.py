"""Acted corpora whose labels live in file names, each on a tiny tree in its real layout."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data.corpora import CORPORA, prepare_corpus
from ser.data.corpora.acted import prepare_crema_d, prepare_ravdess, prepare_savee, prepare_tess
from ser.data.corpora.acted_world import prepare_ased, prepare_casia, prepare_emodb, prepare_emovo, prepare_turev
from ser.data.folds import make_folds
from ser.data.manifest import read_manifest
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
    assert [(e.id, e.reason) for e in result.excluded] == [
        ("1002_TIE_SAD_XX", f"{tmp_path / 'AudioWAV' / '1002_TIE_SAD_XX.wav'} is empty (0 samples)")]
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


def default_folds_by_speaker(corpus: str, root: Path, out: Path) -> list[tuple[set, set]]:
    """(test speakers, train + dev speakers) of each default fold of the prepared manifest."""
    prepare_corpus(CORPORA.get(corpus), root, out, {})
    df = read_manifest(out)
    speakers = df.set_index("id")["speaker"]
    return [(set(speakers[f.test]), set(speakers[f.train + f.dev])) for f in make_folds(df)]


ASED_FOLDERS = {"n1": "01Neutral", "f2": "02Fearful", "h3": "03Happy", "s4": "04Sad", "a5": "05Angry"}


def test_ased_labels_speakers_and_majority_gender(tmp_path):
    write_wav(tmp_path / "05Angry" / "a5-03-01-02-50.wav")
    write_wav(tmp_path / "04Sad" / "S4-04-02-01-29.wav")  # the published capital S
    write_wav(tmp_path / "01Neutral" / "n1-01-01-01-09.wav")
    write_wav(tmp_path / "02Fearful" / "f2-02-02-01-09.wav")
    write_wav(tmp_path / "03Happy" / "h3-05-01-02-09.wav")  # speaker 09's lone male code
    df = by_id(prepare_ased(tmp_path))
    assert df.loc["a5-03-01-02-50", ["label", "speaker", "gender", "sentence"]].tolist() == ["angry", "50", "M", "03"]
    assert df.loc["s4-04-02-01-29", ["label", "speaker", "gender", "repetition"]].tolist() == ["sad", "29", "F", "02"]
    assert df.loc["f2-02-02-01-09", "label"] == "fear"
    assert df.loc[df["speaker"] == "09", "gender"].tolist() == ["F", "F", "F"]
    assert "session" not in df.columns
    write_wav(tmp_path / "03Happy" / "a5-01-01-02-50.wav")  # an angry name in the happy folder
    with pytest.raises(CorpusError, match="1 audio file.*disagrees with their folder"):
        prepare_ased(tmp_path)


def test_ased_default_folds_are_five_speaker_disjoint_groups(tmp_path):
    for speaker in range(1, 11):
        for code, folder in ASED_FOLDERS.items():
            write_wav(tmp_path / "ASED_V1" / folder / f"{code}-01-01-0{1 + speaker % 2}-{speaker:02d}.wav")
    folds = default_folds_by_speaker("ased", tmp_path / "ASED_V1", tmp_path / "m" / "ased.csv")
    assert len(folds) == 5
    assert all(test and not test & rest for test, rest in folds)
    assert set().union(*(test for test, _ in folds)) == {f"{s:02d}" for s in range(1, 11)}


TUREV_CODES = {"kz": "Angry", "sk": "Calm", "mt": "Happy", "hl": "Sad"}


def test_turev_reads_sound_source_only(tmp_path):
    write_wav(tmp_path / "Sound Source" / "Angry" / "1157_kz_acik.wav")
    write_wav(tmp_path / "Sound Source" / "Sad" / "7895_hl_ogul1.wav")
    write_wav(tmp_path / "Sound Source" / "Calm" / "1234_sk_cay.wav")
    write_wav(tmp_path / "Model Output for Test Data" / "testEmotions500HighPass" / "sound" / "Angry" / "1157_kz_dil.wav")
    df = by_id(prepare_turev(tmp_path))
    assert sorted(df.index) == ["1157_kz_acik", "1234_sk_cay", "7895_hl_ogul1"]
    assert df.loc["1157_kz_acik", ["label", "speaker", "text"]].tolist() == ["angry", "1157", "acik"]
    assert df.loc["7895_hl_ogul1", ["label", "speaker", "text"]].tolist() == ["sad", "7895", "ogul"]
    assert df.loc["1234_sk_cay", "label"] == "calm"
    write_wav(tmp_path / "Sound Source" / "Happy" / "1234_kz_kedi.wav")  # an angry code in Happy/
    with pytest.raises(CorpusError, match="disagrees with their folder"):
        prepare_turev(tmp_path)
    with pytest.raises(CorpusError, match="expected folder Sound Source/"):
        prepare_turev(tmp_path / "Sound Source")


def test_turev_default_folds_leave_one_speaker_out(tmp_path):
    speakers = ("1157", "1234", "1358", "1984", "6783", "7895")
    for speaker in speakers:
        for code, folder in TUREV_CODES.items():
            for word in ("kedi", "simit"):
                write_wav(tmp_path / "Sound Source" / folder / f"{speaker}_{code}_{word}.wav")
    folds = default_folds_by_speaker("turev", tmp_path, tmp_path / "m" / "turev.csv")
    assert [sorted(test) for test, _ in folds] == [[s] for s in speakers]
    assert all(not test & rest for test, rest in folds)


def test_a_root_without_audio_names_the_expected_pattern(tmp_path):
    with pytest.raises(CorpusError, match="no audio file matches Actor_XX"):
        prepare_ravdess(tmp_path)
