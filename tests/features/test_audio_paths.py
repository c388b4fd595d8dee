"""A path that exists but is not an audio file (a folder, a device, a FIFO, an empty or unreadable
file) gets its own one-line reason, the same in prepare, extract and predict, and a FIFO is never
opened; a WAV truncated short of its header's length is caught, not decoded short in silence."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser.data.corpora.prepare import check_audio
from ser.errors import AudioError
from ser.features.audio import audio_file_info, declared_wav_frames, load_audio, path_problem, probe_audio
from ser.features.extract import extract
from ser.features.frontends import FbankFrontend
from ser.features.records import UtteranceRecord


def truncated_wav(path, seconds: float = 1.0, kept: float = 0.4):
    """A 16-bit WAV whose header declares `seconds` but whose file ends after `kept` of them."""
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(int(seconds * 16000)), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + int(kept * seconds * 16000) * 2])
    return path


def hostile_paths(folder) -> dict[str, str]:
    """Every kind of path that is not an audio file, with the phrase its reason must hold."""
    folder.mkdir(exist_ok=True)
    (folder / "a-folder.wav").mkdir()
    os.mkfifo(folder / "fifo.wav")
    (folder / "zero-bytes.wav").write_bytes(b"")
    return {
        str(folder / "nowhere.wav"): "file not found",
        str(folder / "a-folder.wav"): "is a folder, not an audio file",
        "/dev/zero": "/dev/zero is a character device, not an audio file",
        str(folder / "fifo.wav"): "is a FIFO (named pipe), not an audio file",
        str(folder / "zero-bytes.wav"): "is empty (0 bytes)",
        str(truncated_wav(folder / "truncated.wav")): "is truncated: its header declares 1.00 s, the file holds 0.40 s",
    }


def test_each_kind_of_path_has_its_reason_and_a_fifo_is_never_opened(tmp_path):
    for path, phrase in hostile_paths(tmp_path / "bad").items():
        record = UtteranceRecord("u", path)
        for probe in (probe_audio, load_audio):  # a FIFO opened for reading would block here forever
            with pytest.raises(AudioError, match=re.escape(phrase)) as caught:
                probe(record)
            assert "\n" not in str(caught.value) and caught.value.utt_id == "u"
    assert path_problem(str(tmp_path / "bad" / "truncated.wav")) is None  # a real file: decoding tells the rest


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_says_permission_denied(wave_file, tmp_path):
    path = wave_file(tmp_path / "locked.wav", 0.5)
    path.chmod(0)
    try:
        with pytest.raises(AudioError, match="cannot read .*locked.wav: permission denied"):
            probe_audio(UtteranceRecord("u", str(path)))
    finally:
        path.chmod(0o644)


def test_a_truncated_wav_is_told_from_a_whole_or_streamed_one(wave_file, tmp_path):
    whole = wave_file(tmp_path / "whole.wav", 1.0, subtype="PCM_16")
    assert declared_wav_frames(str(whole)) == 16000 == audio_file_info(str(whole), "u").frames
    assert declared_wav_frames(str(wave_file(tmp_path / "c.flac", 0.5))) is None  # not a WAV
    streamed = bytearray(whole.read_bytes())
    streamed[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # a data size never filled in: length unknown
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert declared_wav_frames(str(tmp_path / "streamed.wav")) is None
    assert len(load_audio(UtteranceRecord("u", str(tmp_path / "streamed.wav")))) == 16000
    half = truncated_wav(tmp_path / "t.wav", 2.0, kept=0.5)
    assert sf.info(half).frames == 16000  # libsndfile counts what is there, and says nothing
    assert declared_wav_frames(str(half)) == 32000


def test_extract_and_prepare_give_the_same_reasons(audio_files, tmp_path):
    bad = hostile_paths(tmp_path / "bad")
    records = audio_files([0.3]) + [UtteranceRecord(f"bad{i}", path) for i, path in enumerate(bad)]
    summary = extract(records, FbankFrontend(), tmp_path / "c.h5")
    assert summary.extracted == 1 and len(summary.skipped) == len(bad)
    for i, phrase in enumerate(bad.values()):
        assert phrase in summary.skipped[f"bad{i}"]

    table, excluded = check_audio(pd.DataFrame({"id": [r.id for r in records], "path": [r.path for r in records]}))
    assert list(table["id"]) == [records[0].id]
    assert {e.id: e.reason for e in excluded} == summary.skipped  # one helper, one wording
