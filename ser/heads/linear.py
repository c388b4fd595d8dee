"""The SUPERB emotion-recognition probe: Linear → mean over time → Linear."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ser.heads.base import Head
from ser.heads.masking import masked_mean


class LinearHead(Head):
    """SUPERB ER head (s3prl): weighted layer sum → Linear(D, hidden) → masked mean → Linear(hidden, C)."""

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
        frames = self.frames(x, lengths)  # (B, T, D)
        pooled = masked_mean(self.project(frames), lengths)  # (B, hidden)
        return self.classifier(pooled)  # (B, C)
