"""SpecAugment-style feature masking inside a head (ShiftSER's recipe), active in training only."""

from __future__ import annotations

import torch
from torch import nn

# ShiftSER draws its time masks on every utterance padded (or cut) to 7.5 s: 374 frames at 50
# frames/s (its config.py `length`). So a short utterance keeps the reference's small masked share.
REFERENCE_CLIP_FRAMES = 374


def span_masks(lengths: torch.Tensor, size: int, prob: float, span: int, min_masks: int,
               clip: int = 0) -> torch.Tensor:
    """Random spans over each row's first max(n_b, clip) positions, kept only inside its true
    length n_b → (B, size) bool.

    The spans are placed as wav2vec 2.0's SpecAugment places them on a sequence of N_b = max(n_b,
    clip) positions: max(min_masks, floor(prob * N_b / span + u)) spans (u ~ U[0, 1)) of
    min(span, N_b // 2) positions (at least 1), each starting uniformly within [0, N_b - width].
    With `clip` the reference's padded clip length, an utterance shorter than the clip gets the
    masked share the reference gives it, while the padding itself is never masked.
    Randomness comes from torch's global generator, so a seeded run is reproducible.
    """
    n = lengths.to(torch.float32)  # (B,)
    placed = torch.clamp(n, min=float(clip))  # (B,) the positions the spans are drawn over
    width = torch.clamp(torch.minimum(torch.full_like(placed, span), torch.div(placed, 2, rounding_mode="floor")), min=1)
    count = torch.floor(prob * placed / span + torch.rand(n.shape, device=n.device)).clamp(min=min_masks)  # (B,)
    most = int(count.max()) if len(n) else 0
    starts = torch.floor(torch.rand(len(n), most, device=n.device) * (placed - width + 1)[:, None])  # (B, M)
    used = torch.arange(most, device=n.device)[None, :] < count[:, None]  # (B, M)
    positions = torch.arange(size, device=n.device, dtype=torch.float32)[None, None, :]  # (1, 1, size)
    inside = (positions >= starts[:, :, None]) & (positions < (starts + width[:, None])[:, :, None])  # (B, M, size)
    hit = (inside & used[:, :, None]).any(dim=1)  # (B, size)
    return hit & (positions[0] < n[:, None])


class SpecAugment(nn.Module):
    """Time masks (frames replaced by a learned D-dim vector) and channel masks (set to 0) on (B, T, D).

    Time masks are drawn as on a clip of `time_clip_frames` frames (the reference's 7.5 s) or the
    utterance's length if longer, and kept inside the true length: the expected masked share of an
    utterance's frames follows the reference's (≈2.8% at 0.2 s, 7.0% at 1 s, 7.9% from 4 s) and
    padding remains zero. `time_clip_frames=0` draws the masks inside each true length instead.
    Identity in eval mode.
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
        time_clip_frames: int = REFERENCE_CLIP_FRAMES,
    ):
        super().__init__()
        self.time_prob, self.time_span, self.min_time_masks = time_prob, time_span, min_time_masks
        self.channel_prob, self.channel_span, self.min_channel_masks = channel_prob, channel_span, min_channel_masks
        self.time_clip_frames = time_clip_frames
        self.mask_embedding = nn.Parameter(torch.empty(dim).uniform_())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        B, T, D = x.shape
        lengths = lengths.to(x.device)
        time = span_masks(lengths, T, self.time_prob, self.time_span, self.min_time_masks, self.time_clip_frames)  # (B, T)
        x = torch.where(time[:, :, None], self.mask_embedding.to(x.dtype), x)
        full = torch.full((B,), D, device=x.device)
        channels = span_masks(full, D, self.channel_prob, self.channel_span, self.min_channel_masks)  # (B, D)
        return x.masked_fill(channels[:, None, :], 0.0)
