"""TIM-Net (Ye et al., 2023): bidirectional temporal-aware blocks with dynamic fusion."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.base import Head
from ser.heads.masking import frame_mask, reverse_within_lengths


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over (B, C, T) whose training statistics use only the real frames, so a batch's
    padding never changes the result (padded frames come out as zero). In eval mode the running
    statistics are used as usual.

    Training gathers the real frames into (C, N) and runs torch's fused batch norm on them: one
    kernel forward and backward instead of a dozen masked products. `real` holds the positions of
    the real frames in the flattened (B·T) time axis, computed once per batch (a boolean mask
    would be turned into positions again by every norm).
    """

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if not self.training or len(real) < 2:  # eval, or too few frames for batch statistics: running ones
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        B, C, T = x.shape
        # (1, C, N): channels first and contiguous, the layout torch's batch norm kernels are fast on
        frames = x.transpose(0, 1).reshape(C, B * T).index_select(1, real).float()[None]  # float32 stats under autocast
        normalised = F.batch_norm(frames, self.running_mean, self.running_var, self.weight, self.bias, True,
                                  self.momentum, self.eps)[0]  # (C, N); running stats updated (unbiased variance)
        with torch.no_grad():
            self.num_batches_tracked += 1
        out = normalised.new_zeros(C, B * T).index_copy(1, real, normalised)  # (C, B·T), padding zero
        return out.view(C, B, T).transpose(0, 1).contiguous().to(x.dtype)  # (B, C, T)


class TemporalAwareBlock(nn.Module):
    """TAB: two [causal dilated Conv1d → BatchNorm → ReLU → channel dropout] sub-blocks;
    output = x ⊙ sigmoid(sub-blocks(x)), a gate with no residual add. Works on (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.causal_pad = (kernel_size - 1) * dilation
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=dilation) for _ in range(2))
        self.norms = nn.ModuleList(MaskedBatchNorm1d(channels, eps=1e-3, momentum=0.01) for _ in range(2))
        self.dropout = nn.Dropout1d(dropout)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x (B, C, T) with zero padding (`real`: the real frames' positions in B·T) → the same
        shape, padding still zero. No mask products are needed: causal convs never carry padding
        into real frames, the norm's statistics use the real frames only, and the gate multiplies
        x, whose padding is zero."""
        y = x
        for conv, norm in zip(self.convs, self.norms):
            y = conv(F.pad(y, (self.causal_pad, 0)))  # (B, C, T), causal: left padding only
            y = self.dropout(F.relu(norm(y, real)))
        return x * torch.sigmoid(y)


class TIMNetHead(Head):
    """Layer sum → 1×1 conv to `channels` → `num_blocks` TABs (dilation 2^(j-1), kernel 2, causal)
    on the sequence and, with their own weights, on the sequence reversed within its true length.
    After block j: g_j = masked mean over time of (forward_j + backward_j); z = Σ_j w_j g_j with
    learned w (init uniform ±0.05, no softmax) → Linear. Per the paper: 8 blocks (10 for IEMOCAP).
    """

    def __init__(
        self,
        in_dim: int,
        num_layers: int,
        num_classes: int,
        *,
        layers: int | Sequence[int] | None = None,
        layer_norm: bool = False,
        spec_augment: bool = False,
        channels: int = 39,
        num_blocks: int = 8,
        kernel_size: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__(in_dim, num_layers, layers, layer_norm, spec_augment)
        if num_blocks < 1 or channels < 1 or kernel_size < 1:
            raise UserInputError("TIM-Net needs num_blocks, channels and kernel_size of at least 1")
        self.forward_input = nn.Conv1d(in_dim, channels, 1)
        self.backward_input = nn.Conv1d(in_dim, channels, 1)
        self.forward_blocks = nn.ModuleList(
            TemporalAwareBlock(channels, kernel_size, 2**j, dropout) for j in range(num_blocks)
        )
        self.backward_blocks = nn.ModuleList(
            TemporalAwareBlock(channels, kernel_size, 2**j, dropout) for j in range(num_blocks)
        )
        self.fusion = nn.Parameter(torch.empty(num_blocks).uniform_(-0.05, 0.05))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.frames(x, lengths)  # (B, T, D)
        lengths = lengths.to(h.device)
        mask = frame_mask(lengths, h.shape[1])  # (B, T)
        keep = mask[:, None, :].to(h.dtype)  # (B, 1, T)
        ahead = self.forward_input(h.transpose(1, 2)) * keep  # (B, C, T)
        behind = self.backward_input(reverse_within_lengths(h, lengths).transpose(1, 2)) * keep  # (B, C, T)
        real = mask.flatten().nonzero().squeeze(1)  # (N,) positions of the real frames in B·T
        pooled = []
        for forward_block, backward_block in zip(self.forward_blocks, self.backward_blocks):
            ahead, behind = forward_block(ahead, real), backward_block(behind, real)
            pooled.append((ahead + behind).sum(dim=2) / lengths[:, None].to(h.dtype))  # (B, C)
        fused = torch.einsum("bjc,j->bc", torch.stack(pooled, dim=1), self.fusion)  # (B, J, C) → (B, C)
        return self.classifier(fused)  # (B, C)
