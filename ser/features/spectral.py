"""Mel spectrograms in numpy, all frames at once: the numbers of transformers.audio_utils (window_function,
mel_filter_bank, spectrogram, power_to_db) without its per-frame Python loop or its 1 s import.

tests/features/test_spectral.py checks every function against transformers.audio_utils.
"""

from __future__ import annotations

import numpy as np

FRAMES_PER_BLOCK = 2048  # frames transformed together: bounds the memory of a long recording
MEL_FLOOR = 1e-10


def periodic_hann(length: int) -> np.ndarray:
    """The periodic Hann window of `length` samples (float64), as window_function(length, "hann")."""
    return np.hanning(length + 1)[:-1]


def _hz_to_mel(hz: np.ndarray | float, scale: str) -> np.ndarray | float:
    if scale == "kaldi":
        return 1127.0 * np.log(1.0 + hz / 700.0)
    hz = np.asarray(hz, dtype=np.float64)  # slaney: linear below 1 kHz, logarithmic above
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, logarithmic, 3.0 * hz / 200.0)


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    if scale == "kaldi":
        return 700.0 * (np.exp(mel / 1127.0) - 1.0)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), 200.0 * mel / 3.0)


def _triangles(bin_points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(bins, bands) triangular filters with corners at `edges` (bands + 2), sampled at `bin_points`."""
    widths = np.diff(edges)  # (bands + 1,)
    slopes = edges[None, :] - bin_points[:, None]  # (bins, bands + 2)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(rising, falling))


def kaldi_mel_filters(fft_length: int, bands: int, low_hz: float, high_hz: float, sample_rate: int) -> np.ndarray:
    """(fft_length // 2 + 1, bands) filters on Kaldi's mel scale, triangular in mel space
    (mel_filter_bank(..., mel_scale="kaldi", triangularize_in_mel_space=True))."""
    edges = np.linspace(_hz_to_mel(low_hz, "kaldi"), _hz_to_mel(high_hz, "kaldi"), bands + 2)  # mel
    bin_hz = sample_rate / fft_length * np.arange(fft_length // 2 + 1)
    return _triangles(_hz_to_mel(bin_hz, "kaldi"), edges)


def slaney_mel_filters(fft_length: int, bands: int, low_hz: float, high_hz: float, sample_rate: int) -> np.ndarray:
    """(fft_length // 2 + 1, bands) area-normalised filters on Slaney's mel scale, triangular in Hz
    (mel_filter_bank(..., norm="slaney", mel_scale="slaney"), librosa's default)."""
    mels = np.linspace(_hz_to_mel(low_hz, "slaney"), _hz_to_mel(high_hz, "slaney"), bands + 2)
    edges = _mel_to_hz(mels, "slaney")  # (bands + 2,) Hz
    filters = _triangles(np.linspace(0, sample_rate // 2, fft_length // 2 + 1), edges)
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


def mel_power(wave: np.ndarray, window: np.ndarray, hop: int, fft_length: int, mel_filters: np.ndarray,
              center: bool = False) -> np.ndarray:
    """(frames, bands) float64 mel power of a mono wave: windowed frames every `hop` samples,
    zero-padded to `fft_length`, |rfft|² (through complex64, as transformers stores it), floored at
    1e-10. `center` pads len(window) // 2 zeros on both sides first. A wave shorter than one frame
    has no frames."""
    frame_length = len(window)
    wave = np.asarray(wave, dtype=np.float64)
    if center:
        wave = np.pad(wave, frame_length // 2)
    if len(wave) < frame_length:  # not one whole frame
        return np.zeros((0, mel_filters.shape[1]))
    frames = np.lib.stride_tricks.sliding_window_view(wave, frame_length)[::hop]  # (F, frame_length) view
    blocks = []
    for start in range(0, len(frames), FRAMES_PER_BLOCK):
        spectrum = np.fft.rfft(frames[start : start + FRAMES_PER_BLOCK] * window, n=fft_length).astype(np.complex64)
        blocks.append(np.abs(spectrum, dtype=np.float64) ** 2 @ mel_filters)  # (block, bands)
    return np.maximum(MEL_FLOOR, np.concatenate(blocks))


def power_to_db(power: np.ndarray, db_range: float) -> np.ndarray:
    """10·log10(power), clipped `db_range` dB below the maximum (reference 1, floor 1e-10)."""
    db = 10.0 * np.log10(np.maximum(power, MEL_FLOOR))
    return np.maximum(db, db.max() - db_range)
