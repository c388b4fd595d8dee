"""Downstream heads: (x (B, L, T, D), lengths (B,)) → logits (B, C), each owning its weighted layer sum.

Heads know nothing of caches, corpora or training. May import: `ser.errors`, `ser.registry` only.
"""

from ser.heads.base import Head
from ser.heads.layer_sum import WeightedLayerSum
from ser.heads.presets import HEADS, Preset, create_head
from ser.heads.spec_augment import SpecAugment
from ser.heads.temporal_shift import SHIFT_PLACEMENTS, TemporalShift, parse_proportion, temporal_shift

__all__ = [
    "HEADS",
    "SHIFT_PLACEMENTS",
    "Head",
    "Preset",
    "SpecAugment",
    "TemporalShift",
    "WeightedLayerSum",
    "create_head",
    "parse_proportion",
    "temporal_shift",
]
