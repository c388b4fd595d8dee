"""Defaults that follow the cached features: what a run does unless it says otherwise.

Weight-free frontends (fbank, mfcc, egemaps, compare: a cache whose recorded `source` is
`ser:<name>`) hold raw levels, e.g. log-mel energies around −3.7; pre-trained (SSL) models' hidden
states are roughly zero-centred, and the heads' reference recipes assume so.

- `standardize="auto"` (the default): z-scores with each fold's training statistics on frontend
  caches, none on SSL caches (their reference recipes). `True` / `False` force it.
- SpecAugment is off on frontend caches unless the run sets `spec_augment`: the heads fill masked
  frames with a learned vector (initialised in [0, 1)) and masked channels with 0, which shifts a
  raw log-mel utterance's level (an emotion cue) in training only. On SSL caches every head keeps
  its reference default.
- cnn/shiftcnn get a learned input projection, Linear(D, D), on frontend caches: their blocks'
  branches and their final norm see each frame only after a LayerNorm over its channels, and a
  log-mel or cepstral frame's loudness is spread over all its channels, the common part that
  LayerNorm removes. Pooled fbank statistics lose 16 UA points on TurEV-DB when each frame is
  LayerNormed first; ShiftCNN on ASED's MFCC goes from 53.2 to 60.7 UA with the projection. The
  transformers' branches take the frames themselves (post-norm), and Shiftformer on ASED's MFCC
  scores the same with or without it (59.7, 59.9): they keep their reference graph. So do all
  heads on SSL caches.

config.json records the effective `standardize`, `spec_augment` and `input_projection`
(training/loop.py start_fold).
"""

from __future__ import annotations

from pathlib import Path

from ser.errors import UserInputError
from ser.features.backbones import is_weight_free
from ser.features.cache import read_attrs
from ser.heads import HEADS
from ser.training.config import AUTO_STANDARDIZE, TrainConfig, head_constructor_options
from ser.training.recipes import corpus_head_defaults


def is_frontend_cache(cache_path: Path) -> bool:
    """Whether the cache holds a weight-free frontend's features (its root attribute `source`)."""
    return is_weight_free(str(read_attrs(Path(cache_path)).get("source") or ""))


def resolved_standardize(setting: bool | str, frontend: bool) -> bool:
    """`auto` → on for frontend caches, off for SSL caches; True/False as given."""
    if setting not in (AUTO_STANDARDIZE, True, False):
        raise UserInputError(f"standardize={setting!r} is not auto, true or false")
    return frontend if setting == AUTO_STANDARDIZE else bool(setting)


def feature_head_defaults(head: str, frontend: bool) -> dict:
    """Head options that frontend features change unless the run sets them (those the head takes:
    the multimodal teacher has no SpecAugment)."""
    defaults = {"spec_augment": False, "input_projection": True} if frontend else {}
    accepted = HEADS.get(head).options()
    return {name: value for name, value in defaults.items() if name in accepted}


def head_options(config: TrainConfig, frontend: bool) -> dict:
    """The head constructor's options for a run: the reference's per-corpus defaults, then the
    features' defaults, then the run's own options (which win)."""
    return {**corpus_head_defaults(config.head, config.corpus), **feature_head_defaults(config.head, frontend),
            **head_constructor_options(config.head_kwargs)}
