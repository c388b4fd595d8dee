"""Per-frame work of a stacked model on each member's real frames only: (K, B, T, D) ⇄ (K, N, D).

Taking the real frames out and putting them back are inverse maps between a member's real
frames and its N slots, so the gradient of each is the other: both directions are row gathers
(`index_select`), never scatters. Measured on 8 members × 64 × 250 frames × 80 channels, one
thread: a row gather took 5 ms where the element-wise `gather` took 12 ms and the
`scatter_add` that put frames back (and that is `gather`'s gradient) took 48 ms.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class _SelectRows(torch.autograd.Function):
    """out[i] = source[index[i]], zero where `empty[i]`; the gradient selects the other way,
    grad_source[j] = grad[back_index[j]], zero where `back_empty[j]`. Correct when the two maps
    are inverse to each other on the rows they fill (each filled row has one source)."""

    @staticmethod
    def forward(ctx, source: torch.Tensor, index: torch.Tensor, empty: torch.Tensor, back_index: torch.Tensor,
                back_empty: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(back_index, back_empty)
        return source.index_select(0, index).masked_fill_(empty, 0)  # (rows, D)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        back_index, back_empty = ctx.saved_tensors
        return grad.index_select(0, back_index).masked_fill_(back_empty, 0), None, None, None, None


class RealFrames:
    """Where each member's real frames lie in its flattened (B·T) frame axis, so that per-frame
    layers run on (K, N, D) — N the most real frames of any member — instead of (K, B, T, D)."""

    def __init__(self, valid: torch.Tensor):
        K, B, T, _ = valid.shape  # valid (K, B, T, 1): 1 on real frames
        real = valid.reshape(K, B * T) > 0  # (K, B·T)
        counts = real.sum(dim=1)  # (K,)
        width = max(1, int(counts.max()))
        # the real positions first, in order; slots past a member's count point at frame 0 (unused)
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)[:, :width]  # (K, N)
        self.slots = (torch.arange(width, device=valid.device)[None, :] < counts[:, None])[..., None]  # (K, N, 1)
        self.index = torch.where(self.slots[..., 0], order, 0)  # (K, N)
        self.shape = (K, B, T)
        used = self.slots.reshape(K * width)  # (K·N,)
        self.rows = (self.index + B * T * torch.arange(K, device=valid.device)[:, None]).reshape(K * width)  # (K·N,) into K·B·T
        self.unused = ~used[:, None]  # (K·N, 1)
        self.slot_of_frame = torch.zeros(K * B * T, dtype=torch.long, device=valid.device)  # (K·B·T,) 0 for padding
        self.slot_of_frame[self.rows[used]] = torch.arange(K * width, device=valid.device)[used]  # each real frame's slot
        self.padding = ~real.reshape(K * B * T, 1)  # (K·B·T, 1)

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """x (K, B, T, D) → its real frames (K, N, D), unused slots zero."""
        K, B, T, D = x.shape
        rows = _SelectRows.apply(x.reshape(K * B * T, D), self.rows, self.unused, self.slot_of_frame, self.padding)
        return rows.view(K, -1, D)

    def put(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (K, N, D) back in place → (K, B, T, D), padding zero."""
        K, B, T = self.shape
        D = frames.shape[-1]
        rows = _SelectRows.apply(frames.reshape(-1, D), self.slot_of_frame, self.padding, self.rows, self.unused)
        return rows.view(K, B, T, D)
