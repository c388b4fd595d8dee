"""Length masks and masked pooling: how every head ignores the zero padding of a batch."""

from __future__ import annotations

import torch
from torch import nn


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths → (B, T) bool, True on real frames."""
    steps = torch.arange(max_len, device=lengths.device)  # (T,)
    return steps[None, :] < lengths[:, None]  # (B, T)


def zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Set the padded frames of x (B, T, D) to exactly zero."""
    mask = frame_mask(lengths.to(x.device), x.shape[1])  # (B, T)
    return x * mask[:, :, None].to(x.dtype)


def mean_weights(lengths: torch.Tensor, max_len: int, like: torch.Tensor) -> torch.Tensor:
    """(B,) lengths → (B, T) weights of a mean over the real frames: 1/length on them, 0 on padding
    (dtype and device of `like`)."""
    lengths = lengths.to(like.device)
    return frame_mask(lengths, max_len).to(like.dtype) / lengths.clamp(min=1)[:, None].to(like.dtype)


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the real frames of x (B, T, D) → (B, D)."""
    weights = mean_weights(lengths, x.shape[1], x)  # (B, T)
    return torch.bmm(weights[:, None, :], x).squeeze(1)  # (B, D): one product, no masked copy of x


def layer_means(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the real frames of every layer of x (B, L, T, D) → (B, L, D)."""
    B, L, T, D = x.shape
    weights = mean_weights(lengths, T, x)  # (B, T)
    rows = weights[:, None, None, :].expand(B, L, 1, T).reshape(B * L, 1, T)  # (B·L, 1, T)
    return torch.bmm(rows, x.reshape(B * L, T, D)).view(B, L, D)  # one product per layer, no copy of x


class _SwapRows(torch.autograd.Function):
    """out[i] = x[index[i]] for an index that is its own inverse (index[index[i]] == i), so the
    gradient is the same row gather: no `scatter_add` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        return _SwapRows.apply(grad, index), None


def swap_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of x (N, D) permuted by `index` (N,), an involution: x[index], with the gradient as cheap."""
    return _SwapRows.apply(x, index)


def reversal_source(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(...) lengths → (..., T) the frame each frame takes when every sequence is reversed inside
    its true length: length − 1 − t on real frames, t (itself) on padding."""
    steps = torch.arange(max_len, device=lengths.device)  # (T,)
    ends = lengths[..., None]  # (..., 1)
    return torch.where(steps < ends, ends - 1 - steps, steps)  # (..., T)


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of x (B, T, D) inside its true length; padding stays at the end."""
    B, T, D = x.shape
    source = reversal_source(lengths.to(x.device), T)  # (B, T)
    rows = (source + T * torch.arange(B, device=x.device)[:, None]).reshape(B * T)  # (B·T,) into x's rows
    return swap_rows(x.reshape(B * T, D), rows).view(B, T, D)


class AttentivePooling(nn.Module):
    """Softmax-weighted mean over the real frames with a learned score per frame: (B, T, D) → (B, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(~frame_mask(lengths.to(x.device), x.shape[1]), float("-inf"))
        weights = scores.softmax(dim=1)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, x)
