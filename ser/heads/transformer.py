"""Transformer / Shiftformer: post-norm blocks with relative-position attention, or a temporal
shift in place of attention (ShiftSER's Shiftformer)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.base import Head
from ser.heads.cnn import shifted_block_indices
from ser.heads.masking import frame_mask, masked_mean, zero_padding
from ser.heads.temporal_shift import SHIFT_PLACEMENTS, TemporalShift, check_placement


def default_attention_heads(dim: int, preferred: int = 12) -> int:
    """12 heads when they divide dim (the reference), else the largest divisor of dim below 12."""
    return max(h for h in range(1, preferred + 1) if dim % h == 0)


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with a learned bias per head over clipped relative distances,
    and a key padding mask so padded frames are never attended to."""

    def __init__(self, dim: int, heads: int, dropout: float, max_distance: int):
        super().__init__()
        self.heads, self.dropout, self.max_distance = heads, dropout, max_distance
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_bias = nn.Parameter(torch.zeros(2 * max_distance + 1, heads))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        steps = torch.arange(T, device=x.device)
        distance = (steps[None, :] - steps[:, None]).clamp(-self.max_distance, self.max_distance)  # (T, T)
        bias = self.relative_bias[distance + self.max_distance].permute(2, 0, 1)  # (H, T, T)
        keys = frame_mask(lengths.to(x.device), T)[:, None, None, :]  # (B, 1, 1, T)
        mask = bias[None].to(q.dtype).masked_fill(~keys, float("-inf"))  # (B, H, T, T)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class TransformerBlock(nn.Module):
    """Post-norm block. Attention sub-block by placement (A = dropout(MHSA)):
    none LN(x + A(x)); residual LN(shift(x) + A(x)); tsm-residual LN(x + A(shift(x)));
    inplace xs = shift(x), LN(xs + A(xs)); replacement x = shift(x) (no attention, no LN).
    Then x = LN(x + MLP(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float, max_distance: int,
                 placement: str, shift: TemporalShift | None):
        super().__init__()
        self.placement, self.shift = placement, shift
        if placement != "replacement":
            self.attention = RelativeSelfAttention(dim, heads, dropout, max_distance)
            self.attention_dropout = nn.Dropout(dropout)
            self.attention_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout),
        )
        self.mlp_norm = nn.LayerNorm(dim)

    def attend(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.attention_dropout(self.attention(zero_padding(x, lengths), lengths))

    def mix(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The token-mixing sub-block (attention and/or shift) for x (B, T, D)."""
        if self.placement == "none":
            return self.attention_norm(x + self.attend(x, lengths))
        shifted = self.shift(x, lengths)
        if self.placement == "replacement":
            return shifted
        if self.placement == "residual":
            return self.attention_norm(shifted + self.attend(x, lengths))
        if self.placement == "tsm-residual":
            return self.attention_norm(x + self.attend(shifted, lengths))
        return self.attention_norm(shifted + self.attend(shifted, lengths))  # inplace

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.mix(x, lengths)  # (B, T, D)
        return zero_padding(self.mlp_norm(x + self.mlp(x)), lengths)


class TransformerHead(Head):
    """Layer sum → [SpecAugment] → post-norm blocks → masked mean → Linear (no final LayerNorm).

    `shift_placement`: none, replacement (Shiftformer), residual, tsm-residual or inplace, in the
    blocks listed by `shift_blocks` (None = all). `n_div` sets the shifted fraction 1/n_div PER
    DIRECTION. `attention_heads` None = 12 when they divide in_dim, else the largest divisor < 12.
    """

    def __init__(
        self,
        in_dim: int,
        num_layers: int,
        num_classes: int,
        *,
        layers: int | Sequence[int] | None = None,
        layer_norm: bool = False,
        spec_augment: bool = True,
        num_blocks: int = 2,
        attention_heads: int | None = None,
        mlp_ratio: int = 4,
        dropout: float = 0.1,
        max_relative_distance: int = 64,
        shift_placement: str = "none",
        shift_blocks: Sequence[int] | None = None,
        n_div: int = 4,
        bidirectional: bool = False,
        shift_stride: int = 1,
    ):
        super().__init__(in_dim, num_layers, layers, layer_norm, spec_augment)
        check_placement(shift_placement, SHIFT_PLACEMENTS, "transformer")
        heads = attention_heads or default_attention_heads(in_dim)
        if in_dim % heads:
            raise UserInputError(f"{heads} attention heads do not divide the feature size {in_dim}")
        shifted = shifted_block_indices(num_blocks, shift_blocks, shift_placement)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                in_dim, heads, mlp_ratio, dropout, max_relative_distance,
                shift_placement if index in shifted else "none",
                TemporalShift(in_dim, n_div, shift_stride, bidirectional) if index in shifted else None,
            )
            for index in range(num_blocks)
        )
        self.classifier = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.frames(x, lengths)  # (B, T, D)
        for block in self.blocks:
            h = block(h, lengths)  # (B, T, D)
        return self.classifier(masked_mean(h, lengths))  # (B, C)
