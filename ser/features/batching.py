"""Which utterances share a forward pass, per backbone family (pure functions, planned from
probed lengths before any audio is decoded)."""

from __future__ import annotations

import math

from ser.features.records import UtteranceRecord
from ser.features.whisper_backbone import WINDOW_SAMPLES

FRONTEND_BATCH = 32  # frontends run one wave at a time; this only groups work for the reader thread


def plan_batches(
    items: list[tuple[UtteranceRecord, int]], batching: str, budget_samples: int
) -> list[list[UtteranceRecord]]:
    """Group (record, num_samples) pairs into batches, shortest first.

    - single: only equal lengths share a batch (group-norm models never see padding);
    - masked: sorted by length, while batch size × longest ≤ budget;
    - whisper: while the number of 30-s windows ≤ budget / 30 s;
    - frontend: fixed groups.
    Every batch holds at least one utterance.
    """
    ordered = sorted(items, key=lambda item: (item[1], item[0].id))
    batches: list[list[UtteranceRecord]] = []
    current: list[UtteranceRecord] = []
    cost, current_samples = 0, -1
    for record, samples in ordered:
        if batching == "single":
            fits = samples == current_samples and (len(current) + 1) * samples <= budget_samples
        elif batching == "masked":
            fits = bool(current) and (len(current) + 1) * samples <= budget_samples
        elif batching == "whisper":
            windows = max(1, math.ceil(samples / WINDOW_SAMPLES))
            fits = bool(current) and cost + windows <= max(1, budget_samples // WINDOW_SAMPLES)
        else:
            fits = bool(current) and len(current) < FRONTEND_BATCH
        if not fits and current:
            batches.append(current)
            current, cost = [], 0
        current.append(record)
        current_samples = samples
        cost += max(1, math.ceil(samples / WINDOW_SAMPLES)) if batching == "whisper" else samples
    if current:
        batches.append(current)
    return batches
