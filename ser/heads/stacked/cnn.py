"""K `CNNHead` members (cnn and shiftcnn of any shift proportion, placement and direction) as one model.

A sweep's grid points of the CNN family share one graph; they differ only in where and how many
channels shift. For them:
- the depthwise convs of all members are one grouped conv over K·D channels (channels-last, as
  the solo head's), every Linear one batched matmul, every LayerNorm one call (its affine folded
  into the next Linear or the pooled mean);
- the temporal shift is per member: which channels move (the proportion and direction) and
  whether the shortcut and/or the branch input is shifted (the placement), so `cnn` (no shift),
  residual, tsm-residual and in-place members of any proportion batch together;
- per-member tensors are joined with stack/unbind, never with slice writes or x[k] selects:
  their backward would fill a whole (K, B, T, D) tensor per member (benchmarks/stacked.py: K
  stacked members took 1.3-1.5x the time of K solo heads on CPU with them, 1.2x without);
- each member gets its own batch (its seed's data order, its fold's rows); batches are padded to
  the longest one in time and in batch size (padded rows have length 0) — every head is
  padding-invariant, so a member computes what its solo head computes;
- the per-frame stages (LayerNorm and the MLP, most of the arithmetic) run on each member's real
  frames only (`RealFrames`): a solo run's batches are length-bucketed and hardly padded, but the
  members' batches at one step come from different buckets, and padding every member to the
  longest one made the stacked model do about a third more work than its K solo heads;
- SpecAugment draws each member's masks from that member's own torch RNG state, in the order
  the solo head draws them, so a member's random masks are the solo run's.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ser.heads.cnn import CNNHead, depthwise_conv_over_time
from ser.heads.stacked.base import MemberBatch, StackedHeads, block_shifts
from ser.heads.stacked.real_frames import RealFrames


class StackedCNN(StackedHeads):
    """K `CNNHead` members (cnn and shiftcnn of any shift proportion, placement and direction)."""

    head_class = CNNHead
    member_options = ("name", "shift_placement", "shift_blocks", "n_div", "bidirectional")

    @staticmethod
    def floats_per_frame(head: CNNHead, dim: int, frames: int) -> int:
        kw = head.constructor_kwargs
        return kw["num_blocks"] * dim * (3 * kw["mlp_ratio"] + 12) + 8 * dim

    def __init__(self, members: Sequence[CNNHead], device: torch.device):
        super().__init__(members, device)
        first = members[0]
        self.dim = first.classifier.in_features
        self.stride, self.block_shifts = block_shifts(members, self.dim)  # per block, per member: its shift (None: none)

    # ---- the stages -------------------------------------------------------------------------

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm over D without its affine (folded into what follows): (K, …, D)."""
        return F.layer_norm(x, x.shape[-1:], eps=self.template.norm.eps)

    def _branch(self, x: torch.Tensor, frames: RealFrames, params: dict, prefix: str) -> torch.Tensor:
        """F(x) of every member's block for x (K, B, T, D) with zero padding: depthwise conv →
        LayerNorm → MLP (on the real frames), padding zero. The norm's affine is folded into the
        first Linear: W1 (γ ⊙ n + β) + b1 = (W1 diag γ) n + (W1 β + b1)."""
        K, B, T, D = x.shape
        grouped = x.permute(1, 2, 0, 3).reshape(B, T, K * D)  # (B, T, K·D): member k's channels from k·D
        weight = params[f"{prefix}.dwconv.weight"].reshape(K * D, 1, -1)  # (K·D, 1, kernel)
        y = depthwise_conv_over_time(grouped, weight, params[f"{prefix}.dwconv.bias"].reshape(K * D))  # (B, T, K·D)
        real = frames.take(y.view(B, T, K, D).permute(2, 0, 1, 3))  # (K, N, D)
        gamma, beta = params[f"{prefix}.norm.weight"], params[f"{prefix}.norm.bias"]  # (K, D)
        w1, b1 = params[f"{prefix}.mlp.0.weight"], params[f"{prefix}.mlp.0.bias"]  # (K, rD, D), (K, rD)
        hidden = self._linear(self._norm(real), w1 * gamma[:, None, :], torch.baddbmm(b1[:, :, None], w1, beta[:, :, None])[..., 0])
        out = self._linear(F.gelu(hidden), params[f"{prefix}.mlp.2.weight"], params[f"{prefix}.mlp.2.bias"])
        return frames.put(out)  # (K, N, D) → (K, B, T, D)

    # ---- the whole head ---------------------------------------------------------------------

    def forward(self, params: dict, inputs: list[MemberBatch], training: bool,
                rng_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every member on its own batch → (K, B_max, C); rows past a member's B_k are padding."""
        x, lengths, valid = self._padded(params, inputs, training, rng_states)
        frames = RealFrames(valid)
        for index, shifts in enumerate(self.block_shifts):
            shortcut = self._shifted(x, valid, shifts, "shortcut")
            branch_input = self._shifted(x, valid, shifts, "branch")
            x = shortcut + self._branch(branch_input, frames, params, f"blocks.{index}")  # (K, B, T, D), padding zero
        normed = self._norm(x) * valid
        pooled = normed.sum(dim=2) / lengths.clamp(min=1)[..., None].to(x.dtype)  # (K, B, D) before the affine
        pooled = pooled * params["norm.weight"][:, None, :] + params["norm.bias"][:, None, :]  # the mean of γ n + β
        weight, bias = params["classifier.weight"], params["classifier.bias"]  # (K, C, D), (K, C)
        return torch.baddbmm(bias[:, None, :], pooled, weight.transpose(1, 2))  # (K, B, C)
