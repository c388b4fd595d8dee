"""SpecAugment-style feature masking inside a head (ShiftSER's recipe), active in training only."""

from __future__ import annotations

import torch
from torch import nn


def span_masks(lengths: torch.Tensor, size: int, prob: float, span: int, min_masks: int) -> torch.Tensor:
    """Random spans inside each row's true length → (B, size) bool.

    Row b gets max(min_masks, floor(prob * n_b / span + u)) spans (u ~ U[0, 1)) of
    min(span, n_b // 2) positions (at least 1), each starting uniformly within [0, n_b - width].
    Randomness comes from torch's global generator, so a seeded run is reproducible.
    """
    n = lengths.to(torch.float32)  # (B,)
    width = torch.clamp(torch.minimum(torch.full_like(n, span), torch.div(n, 2, rounding_mode="floor")), min=1)
    count = torch.floor(prob * n / span + torch.rand(n.shape, device=n.device)).clamp(min=min_masks)  # (B,)
    most = int(count.max()) if len(n) else 0
    starts = torch.floor(torch.rand(len(n), most, device=n.device) * (n - width + 1)[:, None])  # (B, M)
    used = torch.arange(most, device=n.device)[None, :] < count[:, None]  # (B, M)
    positions = torch.arange(size, device=n.device, dtype=torch.float32)[None, None, :]  # (1, 1, size)
    inside = (positions >= starts[:, :, None]) & (positions < (starts + width[:, None])[:, :, None])  # (B, M, size)
    hit = (inside & used[:, :, None]).any(dim=1)  # (B, size)
    return hit & (positions[0] < n[:, None])


class SpecAugment(nn.Module):
    """Time masks (frames replaced by a learned D-dim vector) and channel masks (set to 0) on (B, T, D).

    Masks stay inside each utterance's true length, so padding remains zero. Identity in eval mode.
    """

    def __init__(
        self,
        dim: int,
        time_prob: float = 0.08,
        time_span: int = 15,
        min_time_masks: int = 2,
        channel_prob: float = 0.05,
        channel_span: int = 64,
        min_channel_masks: int = 1,
    ):
        super().__init__()
        self.time_prob, self.time_span, self.min_time_masks = time_prob, time_span, min_time_masks
        self.channel_prob, self.channel_span, self.min_channel_masks = channel_prob, channel_span, min_channel_masks
        self.mask_embedding = nn.Parameter(torch.empty(dim).uniform_())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        B, T, D = x.shape
        lengths = lengths.to(x.device)
        time = span_masks(lengths, T, self.time_prob, self.time_span, self.min_time_masks)  # (B, T)
        x = torch.where(time[:, :, None], self.mask_embedding.to(x.dtype), x)
        full = torch.full((B,), D, device=x.device)
        channels = span_masks(full, D, self.channel_prob, self.channel_span, self.min_channel_masks)  # (B, D)
        return x.masked_fill(channels[:, None, :], 0.0)
