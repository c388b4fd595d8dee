"""Audio I/O: formats, mono mix-down, resampling, segments, and every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser.errors import AudioError
from ser.features.audio import load_audio, probe_audio
from ser.features.records import UtteranceRecord


def record(path, **kw) -> UtteranceRecord:
    return UtteranceRecord("spk1/utt.1", str(path), **kw)


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg", "mp3"])
def test_formats_decode_to_16k_mono(wave_file, tmp_path, suffix):
    path = wave_file(tmp_path / f"a.{suffix}", 1.0, rate=16000)
    wave = load_audio(record(path))
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1200  # mp3 adds encoder delay/padding
    assert probe_audio(record(path)).sample_rate == 16000


def test_stereo_is_averaged(wave_file, tmp_path):
    path = wave_file(tmp_path / "s.wav", 0.5, channels=2, subtype="FLOAT")
    stereo, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(load_audio(record(path)), stereo.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_to_16k(wave_file, tmp_path, rate):
    path = wave_file(tmp_path / "r.wav", 1.5, rate=rate)
    wave = load_audio(record(path))
    assert abs(len(wave) - 24000) <= 2
    assert probe_audio(record(path)).num_samples == 24000


def test_segment_and_crop(wave_file, tmp_path):
    path = wave_file(tmp_path / "long.wav", 3.0, subtype="FLOAT")
    full, _ = sf.read(path, dtype="float32")
    segment = load_audio(record(path, start=0.5, end=1.25))
    np.testing.assert_array_equal(segment, full[8000:20000])
    assert len(load_audio(record(path, start=0.5), max_seconds=1.0)) == 16000
    assert probe_audio(record(path, start=0.5), max_seconds=1.0).seconds == pytest.approx(1.0)


def test_missing_file_names_the_utterance(wave_file, tmp_path):
    with pytest.raises(AudioError, match=r"spk1/utt\.1: file not found"):
        load_audio(record(tmp_path / "none.wav"))


def test_corrupt_file(wave_file, tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 3)
    with pytest.raises(AudioError, match="cannot read"):
        probe_audio(record(path))
    with pytest.raises(AudioError, match="spk1/utt.1"):
        load_audio(record(path))


def test_empty_and_too_short(wave_file, tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        probe_audio(record(empty))
    short = wave_file(tmp_path / "short.wav", 0.02)
    with pytest.raises(AudioError, match="20.0 ms long; the minimum is 25 ms"):
        load_audio(record(short))
    long = wave_file(tmp_path / "long.wav", 2.0)
    with pytest.raises(AudioError, match=r"long.wav \[0.5–0.52 s\] is 20.0 ms long"):  # the segment, not the file
        load_audio(UtteranceRecord("seg", str(long), start=0.5, end=0.52))


def test_nan_and_inf_samples(wave_file, tmp_path):
    for bad in (np.nan, np.inf):
        wave = np.zeros(8000, dtype=np.float32)
        wave[100] = bad
        path = tmp_path / f"bad{bad}.wav"
        sf.write(path, wave, 16000, subtype="FLOAT")
        with pytest.raises(AudioError, match="NaN or Inf"):
            load_audio(record(path))


def test_segment_outside_file(wave_file, tmp_path):
    path = wave_file(tmp_path / "one.wav", 1.0)
    with pytest.raises(AudioError, match="outside"):
        probe_audio(record(path, start=2.0, end=3.0))
