"""The numpy mel spectrograms give transformers.audio_utils' numbers (the reference the frontends
were built on), frame for frame."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dct
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from ser.features.backbones import load_backbone
from ser.features.spectral import kaldi_mel_filters, periodic_hann, slaney_mel_filters


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise plus a gliding tone: every band carries energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_windows_and_filter_banks_are_transformers():
    assert np.array_equal(periodic_hann(400), window_function(400, "hann", periodic=True))
    kaldi = mel_filter_bank(257, 80, 20.0, 8000.0, 16000, mel_scale="kaldi", triangularize_in_mel_space=True)
    slaney = mel_filter_bank(1025, 128, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(kaldi_mel_filters(512, 80, 20.0, 8000.0, 16000), kaldi, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(slaney_mel_filters(2048, 128, 0.0, 8000.0, 16000), slaney, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seconds", [0.0255, 1.0, 3.7])
def test_fbank_is_transformers_log_mel(seconds):
    wave = speechlike(seconds, 0)
    expected = spectrogram(
        wave, window_function(400, "hann"), 400, 160, 512, power=2.0, center=False,
        mel_filters=mel_filter_bank(257, 80, 20.0, 8000.0, 16000, mel_scale="kaldi", triangularize_in_mel_space=True),
        log_mel="log",
    ).T  # (T, 80)
    (states,) = load_backbone("fbank").forward([wave])
    assert states.shape == (1, *expected.shape)
    np.testing.assert_allclose(states[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seconds", [0.01, 1.0, 3.7])
def test_mfcc_is_transformers_db_mel_through_dct(seconds):
    wave = speechlike(seconds, 1)
    db = spectrogram(
        wave, window_function(1486, "hann"), 1486, 372, 2048, power=2.0, center=True, pad_mode="constant",
        mel_filters=mel_filter_bank(1025, 128, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney"),
        log_mel="dB", db_range=80.0,
    )  # (128, T)
    expected = dct(db, type=2, axis=0, norm="ortho")[:39].T  # (T, 39)
    (states,) = load_backbone("mfcc").forward([wave])
    assert states.shape == (1, *expected.shape)
    np.testing.assert_allclose(states[0], expected, rtol=1e-5, atol=1e-5)


def test_a_clip_shorter_than_one_window_has_no_fbank_frames():
    (states,) = load_backbone("fbank").forward([np.zeros(399, np.float32)])
    assert states.shape == (1, 0, 80)
