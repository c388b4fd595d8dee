"""TIM-Net (Ye et al., 2023): bidirectional temporal-aware blocks with dynamic fusion.

The blocks run on the batch's real frames only, packed sequence after sequence into (C, N):
padding never enters a convolution, a norm's statistics or a pooled mean, so no mask product or
masked statistic is needed, and the causal dilated convolutions are plain matrix products whose
shifted taps stop at each sequence's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.base import Head
from ser.heads.masking import frame_mask


@dataclass(frozen=True)
class PackedFrames:
    """Where a batch's real frames sit once packed sequence after sequence: N real frames of B
    sequences padded to T. Built once per batch and shared by every block."""

    real: torch.Tensor  # (N,) positions of the real frames in the flattened (B·T) batch
    time: torch.Tensor  # (N,) each frame's time step within its own sequence
    sequence: torch.Tensor  # (N,) each frame's sequence
    reversed_order: torch.Tensor  # (N,) packed position of the frame at the mirrored time step
    pooling: torch.Tensor  # (N, B): 1/length on the frames of each sequence, else 0

    @classmethod
    def of(cls, lengths: torch.Tensor, max_len: int, dtype: torch.dtype) -> "PackedFrames":
        real = frame_mask(lengths, max_len).flatten().nonzero().squeeze(1)  # (N,)
        sequence = real // max_len
        time = real - sequence * max_len  # (not real % max_len: ONNX has no remainder by a graph size)
        starts = lengths.cumsum(0) - lengths  # (B,) packed position of each sequence's first frame
        reversed_order = starts[sequence] + lengths[sequence] - 1 - time
        count = real.shape[0]  # N as a size of the graph, not a Python int: torch.export can trace it
        if not torch.jit.is_tracing():  # (the tracing exporter makes `count` a tensor)
            torch._check(count > 0)  # every length is ≥ 1: what torch.export's shape reasoning needs to know
        pooling = torch.zeros(count, lengths.shape[0], dtype=dtype, device=lengths.device)
        pooling[torch.arange(count, device=lengths.device), sequence] = 1 / lengths[sequence].to(dtype)
        return cls(real, time, sequence, reversed_order, pooling)

    def shift(self, z: torch.Tensor, lag: int) -> torch.Tensor:
        """z (..., N) delayed by `lag` steps within each sequence: a sequence's first `lag` frames get 0."""
        if lag == 0:
            return z
        started = (self.time >= lag).to(z.dtype)  # (N,)
        return F.pad(z, (lag, 0))[..., : z.shape[-1]] * started


class TemporalAwareBlock(nn.Module):
    """TAB: two [causal dilated Conv1d → BatchNorm → ReLU → channel dropout] sub-blocks;
    output = x ⊙ sigmoid(sub-blocks(x)), a gate with no residual add. It holds the parameters;
    `run_side_by_side` computes TABs of one level together (the forward and backward direction)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.dilation = dilation
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=dilation) for _ in range(2))
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01) for _ in range(2))
        self.dropout = nn.Dropout1d(dropout)

    def channel_keep(self, batch_size: int, channels: int, like: torch.Tensor) -> torch.Tensor | None:
        """nn.Dropout1d's random draw for a (B, C, T) batch, as (C, B) scale factors; None without dropout."""
        p = self.dropout.p
        if not self.training or p == 0:
            return None
        return like.new_empty(batch_size, channels, 1).bernoulli_(1 - p).div_(1 - p)[:, :, 0].t()  # (C, B)


def causal_convs(convs: list[nn.Conv1d], dilation: int, x: torch.Tensor, frames: PackedFrames) -> torch.Tensor:
    """What each conv computes on its sequences left-padded by (k-1)·dilation: x (G, C, N) → (G, C, N)."""
    k, C = convs[0].kernel_size[0], convs[0].out_channels
    weights = torch.stack([conv.weight.permute(2, 0, 1).reshape(k * C, -1) for conv in convs])  # (G, k·C, C)
    taps = torch.bmm(weights, x)  # (G, k·C, N): tap i of every frame
    out = torch.stack([conv.bias for conv in convs])[:, :, None] + taps[:, (k - 1) * C:]  # the last tap: the frame itself
    for i in range(k - 1):  # tap i looks (k-1-i)·dilation steps back
        out = out + frames.shift(taps[:, i * C:(i + 1) * C], (k - 1 - i) * dilation)
    return out


def batch_norms(norms: list[nn.BatchNorm1d], y: torch.Tensor) -> torch.Tensor:
    """Each norm on its group of packed frames y (G, C, N), as one fused batch norm over G·C channels
    (float32 statistics under autocast). In eval mode, or with fewer than two frames, the running
    statistics are used."""
    G, C, N = y.shape
    first = norms[0]
    training = first.training and N >= 2
    running_mean = torch.cat([norm.running_mean for norm in norms])  # (G·C,)
    running_var = torch.cat([norm.running_var for norm in norms])
    out = F.batch_norm(y.float().reshape(1, G * C, N), running_mean, running_var,
                       torch.cat([norm.weight for norm in norms]), torch.cat([norm.bias for norm in norms]),
                       training, first.momentum, first.eps)  # updates the concatenated running statistics
    if training:
        with torch.no_grad():
            for group, norm in enumerate(norms):
                norm.running_mean.copy_(running_mean[group * C:(group + 1) * C])
                norm.running_var.copy_(running_var[group * C:(group + 1) * C])
                norm.num_batches_tracked += 1
    return out.view(G, C, N).to(y.dtype)


def run_side_by_side(tabs: Sequence[TemporalAwareBlock], x: torch.Tensor, frames: PackedFrames,
                     batch_size: int) -> torch.Tensor:
    """TABs of one level, each on its own packed frames: x (G, C, N) → (G, C, N), one product and
    one norm per sub-block for all G. Dropout draws come in the order the TABs would draw them one
    after another."""
    C = x.shape[1]
    keeps = [[tab.channel_keep(batch_size, C, x) for _ in range(2)] for tab in tabs]  # per TAB: (C, B) or None
    y = x
    for sub in range(2):
        y = causal_convs([tab.convs[sub] for tab in tabs], tabs[0].dilation, y, frames)
        y = F.relu(batch_norms([tab.norms[sub] for tab in tabs], y))
        if keeps[0][sub] is not None:
            y = y * torch.stack([keep[sub] for keep in keeps]).index_select(2, frames.sequence)  # (G, C, N)
    return x * torch.sigmoid(y)


class TIMNetHead(Head):
    """Layer sum → 1×1 conv to `channels` → `num_blocks` TABs (dilation 2^(j-1), kernel 2, causal)
    on the sequence and, with their own weights, on the sequence reversed within its true length.
    After block j: g_j = mean over the real frames of (forward_j + backward_j); z = Σ_j w_j g_j with
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
        B, T, D = h.shape
        frames = PackedFrames.of(lengths.to(h.device), T, h.dtype)
        C = self.forward_input.out_channels
        weight = torch.cat([self.forward_input.weight, self.backward_input.weight])[:, :, 0]  # (2C, D)
        bias = torch.cat([self.forward_input.bias, self.backward_input.bias])  # (2C,)
        inputs = F.linear(h.reshape(B * T, D).index_select(0, frames.real), weight, bias).t()  # (2C, N)
        ahead = inputs[:C]  # (C, N) each sequence in time order
        behind = inputs[C:].index_select(1, frames.reversed_order)  # (C, N) each sequence reversed in place
        both = torch.stack([ahead, behind])  # (2, C, N)
        summed = []
        for level in zip(self.forward_blocks, self.backward_blocks):
            both = run_side_by_side(level, both, frames, B)
            summed.append(both.sum(dim=0))  # (C, N): a sequence's frames sum to the same in either order
        weighted = torch.einsum("jcn,j->cn", torch.stack(summed), self.fusion)  # (C, N)
        return self.classifier((weighted @ frames.pooling).t())  # (C, B) means → (B, classes)
