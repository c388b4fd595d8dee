"""The multimodal teacher (reference §5): a pooled audio branch and a pooled text branch, fused.

audio (B, L, T, D) ─ layer sum ─ Linear+ReLU ─ masked mean ┐
                                                           ├─ concat ─ dropout ─ Linear+ReLU ─ dropout ─ Linear → (B, C)
text (B, Lt, Tt, Dt) ─ layer sum ─ Linear+ReLU ─ masked mean ┘

Each branch owns its weighted layer sum; `text_dim` and `text_layers` describe the text cache. Dropout stays in the fusion MLP so that the teacher's
predictive spread under MC dropout can serve as a quality estimate for distillation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ser.heads.layer_sum import WeightedLayerSum
from ser.heads.masking import masked_mean


class PooledBranch(nn.Module):
    """Layer sum → frame-wise projection → masked mean: (B, L, T, D), (B,) → (B, H)."""

    def __init__(self, in_dim: int, num_layers: int, hidden: int, layers: int | Sequence[int] | None = None):
        super().__init__()
        self.layer_sum = WeightedLayerSum(num_layers, layers)
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames = self.project(self.layer_sum(x))  # (B, T, H)
        return masked_mean(frames, lengths)  # (B, H)


class MultimodalHead(nn.Module):
    """Audio + text fusion head: forward(x, lengths, text_x, text_lengths) → logits or values (B, C)."""

    def __init__(
        self,
        in_dim: int,
        num_layers: int,
        num_classes: int,
        *,
        text_dim: int,
        text_layers: int,
        hidden: int = 128,
        dropout: float = 0.2,
        layers: int | Sequence[int] | None = None,
        text_layer_choice: int | Sequence[int] | None = None,
    ):
        super().__init__()
        self.constructor_kwargs: dict = {}  # filled by the registry preset (see presets.py)
        self.audio = PooledBranch(in_dim, num_layers, hidden, layers)
        self.text = PooledBranch(text_dim, text_layers, hidden, text_layer_choice)
        self.fusion = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, text_x: torch.Tensor, text_lengths: torch.Tensor
    ) -> torch.Tensor:
        fused = torch.cat([self.audio(x, lengths), self.text(text_x, text_lengths)], dim=1)  # (B, 2H)
        return self.fusion(fused)  # (B, C)

    def layer_weights(self) -> torch.Tensor:
        """Softmaxed audio layer weights, (L,)."""
        return self.audio.layer_sum.weights()

    def text_layer_weights(self) -> torch.Tensor:
        """Softmaxed text layer weights, (Lt,)."""
        return self.text.layer_sum.weights()
