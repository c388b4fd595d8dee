"""Audio I/O: decode with soundfile, mix down to mono, resample to 16 kHz with soxr, cut segments.

Every problem with a file raises `AudioError` naming the utterance, so extraction can skip it
(or stop) with a message the user can act on.
"""

from __future__ import annotations

import errno
import math
import os
import stat
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


def path_problem(path: str) -> str | None:
    """Why `path` cannot be an audio file, as one phrase that names it (missing, a dangling or
    looping link, a folder, a device or FIFO, empty, unreadable); None when it is worth decoding.
    Only `stat`s the path: opening a FIFO would block."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"cannot read {path}: a symbolic link that loops or points nowhere"
        return f"file not found: {path}"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"cannot read {path}: a symbolic link that loops or points nowhere"
        return f"cannot read {path}: {error.strerror or error}"
    except ValueError:  # an embedded NUL
        return f"{path!r} is not a valid path"
    if stat.S_ISDIR(status.st_mode):
        return f"{path} is a folder, not an audio file"
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(status.st_mode)), "a special file")
        return f"{path} is {kind}, not an audio file"
    if status.st_size == 0:
        return f"{path} is empty (0 bytes)"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


_SPECIAL_FILES = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
_NO_SIZE = (0, 0xFFFFFFFF)  # data sizes of a WAV written as a stream, never filled in


def declared_wav_frames(path: str) -> int | None:
    """Frames a RIFF/WAVE header declares (its `data` size over the `fmt` block size); None when
    the file is not a WAV or leaves the size open. libsndfile instead counts the frames the file
    holds, so a truncated WAV decodes short without a word."""
    block, chunks = 0, 0
    with open(path, "rb") as handle:
        if handle.read(4) != b"RIFF" or len(handle.read(4)) < 4 or handle.read(4) != b"WAVE":
            return None
        while chunks < 64 and len(header := handle.read(8)) == 8:
            name, size = header[:4], int.from_bytes(header[4:], "little")
            if name == b"fmt ":
                body = handle.read(size)
                block = int.from_bytes(body[12:14], "little") if len(body) >= 14 else 0
                handle.seek(size & 1, os.SEEK_CUR)
            elif name == b"data":
                return size // block if block and size not in _NO_SIZE else None
            else:
                handle.seek(size + (size & 1), os.SEEK_CUR)
            chunks += 1
    return None


def audio_file_info(path: str, utt_id: str) -> sf._SoundFileInfo:
    """`sf.info` of a file that exists, is a regular non-empty readable file, decodes as audio and
    holds every frame its header declares; otherwise AudioError naming `utt_id` with the reason.
    Every command probes audio through this (prepare, extract, predict)."""
    problem = path_problem(path)
    if problem:
        raise AudioError(utt_id, problem, "check the path in the manifest")
    try:
        info = sf.info(path)
        declared = declared_wav_frames(path) if info.format in ("WAV", "WAVEX") else None
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        raise AudioError(utt_id, f"cannot read {path}: {error}", "the file is corrupt or not audio") from None
    if declared is not None and declared > info.frames and info.samplerate > 0:
        raise AudioError(utt_id, f"{path} is truncated: its header declares {declared / info.samplerate:.2f} s, the "
                                 f"file holds {info.frames / info.samplerate:.2f} s", "copy or export it again")
    return info


def probe_audio(record: UtteranceRecord, max_seconds: float | None = None) -> AudioInfo:
    """Duration and format of a record without decoding (raises AudioError)."""
    info = audio_file_info(record.path, record.id)
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(record.id, f"{record.path} is empty (0 samples)", "remove it from the manifest")
    start, stop = _segment_frames(record, info.samplerate, info.frames)
    seconds = (stop - start) / info.samplerate
    if max_seconds is not None:
        seconds = min(seconds, max_seconds)
    return AudioInfo(info.samplerate, info.channels, seconds)


def load_audio(record: UtteranceRecord, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 samples at 16 kHz of the record's segment, cropped to `max_seconds`."""
    info = audio_file_info(record.path, record.id)
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
        segment = "" if record.start is None and record.end is None else \
            f" [{record.start or 0:g}–{'end' if record.end is None else f'{record.end:g}'} s]"
        raise AudioError(
            record.id,
            f"{record.path}{segment} is {1000 * wave.size / SAMPLE_RATE:.1f} ms long; the minimum is 25 ms",
            "remove it from the manifest",
        )
    return np.ascontiguousarray(wave)
