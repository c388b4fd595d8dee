"""Waveforms handed to `predict(array, sr=)`, checked and made what a sound file holds: float32
samples in [-1, 1], (samples,) or (samples, channels), at a positive whole sample rate.

- integer PCM is scaled by its dtype's full scale (int16 / 32768, int32 / 2**31, uint8 centred
  on 128), as soundfile reads a PCM file; floats are taken as they are;
- a 2-d array is channels-last or channels-first: the channel axis is the one of at most
  MAX_CHANNELS entries when only one axis is that short;
- anything else (no sample rate, sr ≤ 0, an empty, complex or non-finite array) is one line.
"""

from __future__ import annotations

import numpy as np

from ser.errors import UserInputError
from ser.features.audio import SAMPLE_RATE

MAX_CHANNELS = 8  # more than this on both axes (or neither) cannot be told apart from samples


def pcm_to_float(wave: np.ndarray) -> np.ndarray:
    """Integer PCM → float32 in [-1, 1): divided by the dtype's full scale (unsigned: centred first)."""
    info = np.iinfo(wave.dtype)
    if info.min < 0:
        return (wave.astype(np.float64) / -float(info.min)).astype(np.float32)
    middle = (float(info.max) + 1) / 2
    return ((wave.astype(np.float64) - middle) / middle).astype(np.float32)


def sample_rate(sr) -> int:
    """`sr` as a positive whole number of Hz, or one line saying what to pass."""
    if sr is None:
        raise UserInputError("predict(array) needs the sample rate", f"pass sr=, e.g. sr={SAMPLE_RATE}")
    whole = isinstance(sr, (int, np.integer)) or (isinstance(sr, (float, np.floating)) and float(sr).is_integer())
    if isinstance(sr, bool) or not whole or sr <= 0:
        raise UserInputError(f"sr={sr!r} is not a sample rate",
                             f"pass the waveform's rate in Hz as a positive whole number, e.g. sr={SAMPLE_RATE}")
    return int(sr)


def _channels_last(wave: np.ndarray) -> np.ndarray:
    """(samples, channels) from a channels-last or channels-first 2-d array."""
    rows, columns = wave.shape
    if columns <= MAX_CHANNELS < rows:
        return wave  # (samples, channels)
    if rows <= MAX_CHANNELS < columns:
        return wave.T  # (channels, samples) → (samples, channels)
    raise UserInputError(f"a waveform of shape {wave.shape} is neither (samples, channels) nor (channels, samples)",
                         f"pass mono samples, or up to {MAX_CHANNELS} channels on one axis")


def as_waveform(wave, sr) -> tuple[np.ndarray, int]:
    """(float32 samples (n,) or (n, channels), sample rate) for `predict(array, sr=)`."""
    rate = sample_rate(sr)
    wave = np.asarray(wave)
    if wave.dtype.kind in "iu":
        wave = pcm_to_float(wave)
    elif wave.dtype.kind == "f":
        wave = wave.astype(np.float32)
    else:
        raise UserInputError(f"a waveform of dtype {wave.dtype} cannot be read as audio",
                             "pass float samples in [-1, 1] or integer PCM")
    if wave.ndim == 2:
        wave = _channels_last(wave)
    elif wave.ndim != 1:
        raise UserInputError(f"a waveform of {wave.ndim} dimensions cannot be read as audio",
                             "pass (samples,) or (samples, channels)")
    if wave.shape[0] == 0:
        raise UserInputError("the waveform is empty", "pass at least a few hundred milliseconds of audio")
    if not np.isfinite(wave).all():
        raise UserInputError("the waveform holds NaN or infinite samples", "pass finite samples")
    return wave, rate
