"""Per-utterance source fingerprints: a cache notices audio that changed after it was extracted.

    fingerprint = "<size>:<mtime_ns>:<content>"   content = sha256 of the decoded segment's first
                                                   and last second (16 kHz float32), 16 hex digits

Checking is cheap: a file whose size and mtime are unchanged is taken as unchanged; only a file
whose stat differs is decoded, so a file that was merely touched (same samples) is not reported.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable

import numpy as np

from ser.errors import AudioError
from ser.features.audio import SAMPLE_RATE, load_audio
from ser.features.records import UtteranceRecord


def _stat_part(path: str) -> str:
    info = os.stat(path)
    return f"{info.st_size}:{info.st_mtime_ns}"


def content_part(wave: np.ndarray) -> str:
    """A hash of the first and last second of decoded 16-kHz samples."""
    digest = hashlib.sha256(np.ascontiguousarray(wave[:SAMPLE_RATE], dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(wave[-SAMPLE_RATE:], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def fingerprint(record: UtteranceRecord, wave: np.ndarray) -> str:
    """The fingerprint of a record whose decoded segment is `wave` (empty if the file is gone)."""
    try:
        return f"{_stat_part(record.path)}:{content_part(wave)}"
    except OSError:
        return ""


def changed_sources(records: Iterable[UtteranceRecord], stored: dict[str, str],
                    max_seconds: float | None) -> list[str]:
    """Ids of `records` whose audio no longer matches the stored fingerprint (unreadable audio
    counts as changed); records without a stored fingerprint are not checked."""
    changed = []
    for record in records:
        saved = stored.get(record.id, "")
        if not saved:
            continue
        saved_stat, _, saved_content = saved.rpartition(":")
        try:
            if _stat_part(record.path) == saved_stat:
                continue
            wave = load_audio(record, max_seconds or None)
        except (OSError, AudioError):
            changed.append(record.id)
            continue
        if content_part(wave) != saved_content:
            changed.append(record.id)
    return changed
