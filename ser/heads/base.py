"""What every head shares: the weighted layer sum, an optional input projection, zeroed padding
and in-head SpecAugment."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ser.heads.layer_sum import WeightedLayerSum
from ser.heads.masking import zero_padding
from ser.heads.spec_augment import SpecAugment


class Head(nn.Module):
    """Base of every head: forward(x (B, L, T, D), lengths (B,)) → logits (B, C), no softmax.

    `input_projection`: a learned Linear(D, D) after the layer sum, an option of the heads whose
    body sees frames only through a per-frame LayerNorm over their D channels (cnn: its blocks'
    branches and its final norm). On weight-free features (fbank, MFCC) a frame's level is its
    mean over the channels, which that norm removes; projected first, the level lies along
    directions the norm keeps (training/feature_defaults.py).

    `constructor_kwargs` is filled by the preset that builds the head (see presets.py), so that
    `create_head(**head.constructor_kwargs)` rebuilds it.
    """

    def __init__(
        self,
        in_dim: int,
        num_layers: int,
        layers: int | Sequence[int] | None,
        layer_norm: bool,
        spec_augment: bool,
        input_projection: bool = False,
    ):
        super().__init__()
        self.layer_sum = WeightedLayerSum(num_layers, layers, layer_norm)
        self.input_projection = nn.Linear(in_dim, in_dim) if input_projection else None
        self.spec_augment = SpecAugment(in_dim) if spec_augment else None
        self.constructor_kwargs: dict = {}

    def augment(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Zero the padding of frames (B, T, D), then SpecAugment them when training."""
        frames = zero_padding(frames, lengths)
        return self.spec_augment(frames, lengths) if self.spec_augment is not None else frames

    def frames(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The first stage: (B, L, T, D) → layer sum [→ projection] → (B, T, D), padding zero,
        augmented in training."""
        frames = self.layer_sum(x)  # (B, T, D)
        if self.input_projection is not None:
            frames = self.input_projection(frames)
        return self.augment(frames, lengths)

    def layer_weights(self) -> torch.Tensor:
        """Softmaxed layer weights, (L,) (one-hot for a single layer)."""
        return self.layer_sum.weights()
