"""CNN / ShiftCNN: ConvNeXt-style 1-D blocks with an optional temporal shift (ShiftSER)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.base import Head
from ser.heads.masking import masked_mean, zero_padding
from ser.heads.temporal_shift import TemporalShift, check_placement

CNN_PLACEMENTS = ("none", "residual", "tsm-residual", "inplace")


def shifted_block_indices(num_blocks: int, shift_blocks: Sequence[int] | None, placement: str) -> set[int]:
    """Which blocks carry the shift (None = all of them; none when the placement is "none")."""
    if placement == "none":
        return set()
    chosen = range(num_blocks) if shift_blocks is None else list(shift_blocks)
    for index in chosen:
        if not 0 <= index < num_blocks:
            raise UserInputError(f"shift block {index} does not exist", f"the head has blocks 0..{num_blocks - 1}")
    return set(chosen)


def depthwise_conv_over_time(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A depthwise Conv1d over time (weight (C, 1, k), padding k // 2) of x (B, T, C), in x's own
    layout: a conv2d on the channels-last (B, C, T, 1) view of x, so neither x nor the output is
    copied transposed (on CPU 4x faster than conv1d on x transposed, forward and backward)."""
    B, T, C = x.shape
    k = weight.shape[-1]
    grid = x.reshape(B, T, 1, C).permute(0, 3, 1, 2)  # (B, C, T, 1) with channels-last memory
    kernel = weight.unsqueeze(-1).contiguous(memory_format=torch.channels_last)  # (C, 1, k, 1)
    out = F.conv2d(grid, kernel, bias, padding=(k // 2, 0), groups=C)  # (B, C, T, 1), channels-last
    return out.permute(0, 2, 3, 1).reshape(B, T, C)


class ConvNeXtBlock1d(nn.Module):
    """Block F = depthwise conv → LayerNorm → Linear(D, rD) → GELU → Linear(rD, D), with the
    shift placed as `placement` says (see temporal_shift.SHIFT_PLACEMENTS)."""

    def __init__(self, dim: int, kernel_size: int, mlp_ratio: int, placement: str, shift: TemporalShift | None):
        super().__init__()
        self.placement = placement
        self.shift = shift
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def branch(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """F(x) for x (B, T, D): padding is zeroed before the conv and in the output."""
        x = zero_padding(x, lengths)
        y = depthwise_conv_over_time(x, self.dwconv.weight, self.dwconv.bias)  # (B, T, D)
        return zero_padding(self.mlp(self.norm(y)), lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.placement == "none":
            return x + self.branch(x, lengths)
        shifted = self.shift(x, lengths)
        if self.placement == "residual":
            return shifted + self.branch(x, lengths)
        if self.placement == "tsm-residual":
            return x + self.branch(shifted, lengths)
        return shifted + self.branch(shifted, lengths)  # inplace


class CNNHead(Head):
    """Layer sum → [input projection] → [SpecAugment] → ConvNeXt 1-D blocks → LayerNorm → masked
    mean → Linear.

    `shift_placement` is one of none, residual, tsm-residual, inplace; `shift_blocks` lists the
    0-based blocks that carry the shift (None = all). `n_div` sets the shifted fraction 1/n_div
    PER DIRECTION; `bidirectional` also advances a second group; `shift_stride` frames per shift.
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
        input_projection: bool = False,
        num_blocks: int = 2,
        kernel_size: int = 7,
        mlp_ratio: int = 4,
        shift_placement: str = "none",
        shift_blocks: Sequence[int] | None = None,
        n_div: int = 16,
        bidirectional: bool = False,
        shift_stride: int = 1,
    ):
        super().__init__(in_dim, num_layers, layers, layer_norm, spec_augment, input_projection)
        check_placement(shift_placement, CNN_PLACEMENTS, "cnn")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise UserInputError(f"kernel_size must be odd, got {kernel_size}", "the depthwise conv is centred")
        shifted = shifted_block_indices(num_blocks, shift_blocks, shift_placement)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock1d(
                in_dim,
                kernel_size,
                mlp_ratio,
                shift_placement if index in shifted else "none",
                TemporalShift(in_dim, n_div, shift_stride, bidirectional) if index in shifted else None,
            )
            for index in range(num_blocks)
        )
        self.norm = nn.LayerNorm(in_dim)
        self.classifier = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.frames(x, lengths)  # (B, T, D)
        for block in self.blocks:
            h = block(h, lengths)  # (B, T, D)
        pooled = masked_mean(self.norm(h), lengths)  # (B, D)
        return self.classifier(pooled)  # (B, C)
