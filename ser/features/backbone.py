"""The backbone contract (s3prl style): audio in, every hidden layer out, with exact frame counts."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

SAMPLE_RATE = 16000
BATCHING_KINDS = ("single", "masked", "whisper", "frontend")
FORWARD_ALLOWANCE = 64 * 2**20  # what a first forward pass allocates besides its tensors (kernels, scratch)


class Backbone(ABC):
    """A frozen feature extractor.

    `forward(waves)` takes mono float32 16-kHz waves and returns one float32 array per wave of
    shape (num_layers, T, dim), T = `num_frames(len(wave))`. `batching` says which waves may share
    a forward call: "single" (group-norm models: only equal lengths, never padding), "masked"
    (layer-norm models: any lengths, padded with an attention mask), "whisper" (30-s windows) or
    "frontend" (signal processing, one wave at a time).
    """

    sample_rate = SAMPLE_RATE
    functional_names: tuple[str, ...] = ()  # utterance-level features, when `utterance_functionals` gives some

    def __init__(
        self,
        *,
        name: str,
        source: str,
        revision: str,
        random_init: bool,
        num_layers: int,
        dim: int,
        frame_rate: float,
        batching: str,
        device: str = "cpu",
    ):
        if batching not in BATCHING_KINDS:
            raise ValueError(f"batching must be one of {BATCHING_KINDS}, not {batching!r}")
        self.name = name
        self.source = source
        self.revision = revision
        self.random_init = random_init
        self.num_layers = num_layers
        self.dim = dim
        self.frame_rate = frame_rate
        self.batching = batching
        self.device = device

    @abstractmethod
    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a wave of `num_samples` samples."""

    @abstractmethod
    def forward(self, waves: list[np.ndarray], full_precision: bool = False) -> list[np.ndarray]:
        """Every layer of every wave: a list of float32 arrays (num_layers, T, dim).

        `full_precision=True` disables GPU autocast (used to redo an utterance that overflowed).
        """

    def peak_memory_bytes(self, num_samples: int) -> int:
        """Estimated peak memory of `forward` on one wave of `num_samples` samples (see
        features/memory_guard.py): a fixed allowance, the wave in float64, and the states
        (L, T, D) about three times over in float64 (outputs, their stack, the numpy copy).
        Families whose activations grow faster (attention: T²) add theirs."""
        frames = max(self.num_frames(num_samples), 0)
        return FORWARD_ALLOWANCE + 8 * (2 * num_samples + 3 * self.num_layers * frames * self.dim)

    def utterance_functionals(self, wave: np.ndarray) -> np.ndarray | None:
        """Utterance-level features of one wave, (F,) float32, stored beside the pooled statistics;
        None for backbones that have none (every neural model)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, layers={self.num_layers}, dim={self.dim}, {self.batching})"


def resolve_device(device: str) -> str:
    """`auto` → `cuda` when a GPU is visible, else `cpu`; other names are checked (extraction and
    training share this rule)."""
    import torch

    from ser.errors import UserInputError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserInputError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {device} was asked for but no GPU is visible", "use --device cpu or auto")
    return device


def quiet_transformers() -> None:
    """Hide transformers' own loading bars: extraction shows one progress bar of its own."""
    from transformers.utils import logging

    logging.disable_progress_bar()
