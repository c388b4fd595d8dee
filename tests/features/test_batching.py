"""Batch planning per backbone family."""

from ser.features.batching import plan_batches
from ser.features.records import UtteranceRecord


def items(*samples: int):
    return [(UtteranceRecord(f"u{i}", f"/a/{i}.wav"), n) for i, n in enumerate(samples)]


def ids(batches):
    return [[record.id for record in batch] for batch in batches]


def test_single_batches_only_equal_lengths():
    assert ids(plan_batches(items(500, 800, 500, 500, 900), "single", 1000)) == [["u0", "u2"], ["u3"], ["u1"], ["u4"]]


def test_masked_sorted_by_length_within_padded_budget():
    assert ids(plan_batches(items(300, 100, 200, 900), "masked", 700)) == [["u1", "u2"], ["u0"], ["u3"]]


def test_whisper_counts_windows():
    thirty = 30 * 16000
    batches = plan_batches(items(thirty + 1, 100, 200), "whisper", 2 * thirty)
    assert ids(batches) == [["u1", "u2"], ["u0"]]
