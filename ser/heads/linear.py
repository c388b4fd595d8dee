"""The SUPERB emotion-recognition probe: Linear → mean over time → Linear."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ser.heads.base import Head
from ser.heads.masking import layer_means, masked_mean


class LinearHead(Head):
    """SUPERB ER head (s3prl): weighted layer sum → Linear(D, hidden) → masked mean → Linear(hidden, C)
    (computed as mean → layer sum → Linear, equal up to rounding: see forward)."""

    def __init__(
        self,
        in_dim: int,
        num_layers: int,
        num_classes: int,
        *,
        layers: int | Sequence[int] | None = None,
        layer_norm: bool = False,
        spec_augment: bool = False,
        hidden_size: int = 256,
    ):
        super().__init__(in_dim, num_layers, layers, layer_norm, spec_augment)
        self.project = nn.Linear(in_dim, hidden_size)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, C). The layer sum and the projection are affine per frame, so they commute
        with the mean over time: each layer is averaged over the real frames first (one pass over
        x), and the sum and the projection run once per utterance. SpecAugment changes frames at
        random, so in training with it the augmented frames are averaged instead."""
        if self.training and self.spec_augment is not None:
            pooled = masked_mean(self.frames(x, lengths), lengths)  # (B, D)
        else:
            means = layer_means(self.layer_sum.select(x), lengths)  # (B, L', D)
            pooled = self.layer_sum.combine(means[:, :, None, :])[:, 0]  # (B, D)
        return self.classifier(self.project(pooled))  # (B, C)
