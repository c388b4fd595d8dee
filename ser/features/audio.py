"""Audio I/O: decode with soundfile, mix down to mono, resample to 16 kHz with soxr, cut segments.

Every problem with a file raises `AudioError` naming the utterance, so extraction can skip it
(or stop) with a message the user can act on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from ser.errors import AudioError
from ser.features.records import UtteranceRecord

SAMPLE_RATE = 16000
MIN_SECONDS = 0.025  # the wav2vec2 conv stack needs 400 samples (25 ms) for one frame


@dataclass(frozen=True)
class AudioInfo:
    """What `sf.info` tells without decoding, with the segment applied."""

    sample_rate: int
    channels: int
    seconds: float  # duration of the selected segment (after --max-seconds cropping)

    @property
    def num_samples(self) -> int:
        """Samples at 16 kHz (used to plan batches before decoding)."""
        return int(round(self.seconds * SAMPLE_RATE))


def _segment_frames(record: UtteranceRecord, sample_rate: int, total_frames: int) -> tuple[int, int]:
    """First and one-past-last frame of the record's segment in the file's own rate."""
    start = 0 if record.start is None else int(round(record.start * sample_rate))
    stop = total_frames if record.end is None else int(round(record.end * sample_rate))
    if start < 0 or (record.end is not None and record.start is not None and record.end <= record.start):
        raise AudioError(record.id, f"invalid segment start={record.start} end={record.end}", "fix start/end in the manifest")
    if start >= total_frames or stop > total_frames + int(0.01 * sample_rate):
        seconds = total_frames / sample_rate
        raise AudioError(
            record.id,
            f"segment start={record.start} end={record.end} lies outside {record.path} ({seconds:.2f} s)",
            "fix start/end in the manifest",
        )
    return start, min(stop, total_frames)


def _open_info(record: UtteranceRecord) -> sf._SoundFileInfo:
    if not os.path.isfile(record.path):
        if os.path.islink(record.path):  # a loop, or a link to nothing
            raise AudioError(record.id, f"cannot read {record.path}: a symbolic link that loops or points nowhere",
                             "fix the link")
        raise AudioError(record.id, f"file not found: {record.path}", "check the path in the manifest")
    try:
        return sf.info(record.path)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(record.id, f"cannot read {record.path}: {error}", "the file is corrupt or not audio") from None


def probe_audio(record: UtteranceRecord, max_seconds: float | None = None) -> AudioInfo:
    """Duration and format of a record without decoding (raises AudioError)."""
    info = _open_info(record)
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(record.id, f"{record.path} is empty (0 samples)", "remove it from the manifest")
    start, stop = _segment_frames(record, info.samplerate, info.frames)
    seconds = (stop - start) / info.samplerate
    if max_seconds is not None:
        seconds = min(seconds, max_seconds)
    return AudioInfo(info.samplerate, info.channels, seconds)


def load_audio(record: UtteranceRecord, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 samples at 16 kHz of the record's segment, cropped to `max_seconds`."""
    info = _open_info(record)
    start, stop = _segment_frames(record, info.samplerate, max(info.frames, 1))
    if max_seconds is not None:
        stop = min(stop, start + int(math.ceil(max_seconds * info.samplerate)))
    try:
        samples, rate = sf.read(record.path, start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(record.id, f"cannot decode {record.path}: {error}", "the file is corrupt or not audio") from None
    wave = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]  # (n,)
    if wave.size == 0:
        raise AudioError(record.id, f"{record.path} is empty (0 samples)", "remove it from the manifest")
    if not np.isfinite(wave).all():
        raise AudioError(record.id, f"{record.path} contains NaN or Inf samples", "re-export the file")
    if rate != SAMPLE_RATE:
        wave = soxr.resample(wave, rate, SAMPLE_RATE, "HQ").astype(np.float32, copy=False)
    if max_seconds is not None:
        wave = wave[: int(round(max_seconds * SAMPLE_RATE))]
    if wave.size < MIN_SECONDS * SAMPLE_RATE:
        raise AudioError(
            record.id,
            f"{record.path} is {1000 * wave.size / SAMPLE_RATE:.1f} ms long; the minimum is 25 ms",
            "remove it from the manifest",
        )
    return np.ascontiguousarray(wave)
