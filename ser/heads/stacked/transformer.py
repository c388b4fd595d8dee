"""K `TransformerHead` members (transformer and shiftformer, any shift proportion and placement) as one model.

A Shiftformer ablation's grid points share one graph as long as the same blocks keep their
attention: members whose shift replaces attention in a block stack with each other, members that
keep it (placement none, residual, tsm-residual, in-place) with each other. For them:
- attention is one computation over all members' batches, (K·B, H, T, T): per-member q, k, v and
  relative-position tables, padded keys (and the padded rows of a smaller batch) masked out;
- every Linear is one batched matmul and every post-norm LayerNorm one call, on each member's
  real frames only (`RealFrames`), with the member's affine after it;
- the temporal shift is per member, as in the stacked CNN (`StackedHeads._shifted`).
Members with dropout > 0 train alone: their masks would have to be drawn as each solo run draws
them. The reference's effective dropout is 0.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ser.heads.masking import frame_mask
from ser.heads.stacked.base import StackedHeads, block_shifts
from ser.heads.stacked.real_frames import RealFrames
from ser.heads.transformer import (RelativeKeyQueryAttention, TransformerHead, distance_rows, relative_index,
                                  relative_key_query)


class StackedTransformer(StackedHeads):
    """K `TransformerHead` members that keep attention in the same blocks."""

    head_class = TransformerHead
    member_options = ("name", "shift_placement", "shift_blocks", "n_div", "bidirectional")

    @staticmethod
    def stacks(head: TransformerHead) -> bool:
        return head.constructor_kwargs["dropout"] == 0

    @staticmethod
    def graph(head: TransformerHead) -> tuple:
        return tuple(block.placement == "replacement" for block in head.blocks)  # which blocks have no attention

    @staticmethod
    def floats_per_frame(head: TransformerHead, dim: int, frames: int) -> int:
        kw = head.constructor_kwargs
        heads = next((block.attention.heads for block in head.blocks if hasattr(block, "attention")), 0)
        # per block: q, k, v, scores, positions and softmax per head and key; the MLP and norms per channel
        return kw["num_blocks"] * (dim * (3 * kw["mlp_ratio"] + 16) + 6 * heads * frames) + 4 * dim

    def __init__(self, members: Sequence[TransformerHead], device: torch.device):
        super().__init__(members, device)
        first = members[0]
        self.dim = first.classifier.in_features
        self.stride, self.block_shifts = block_shifts(members, self.dim)  # per block, per member: its shift (None: none)
        self.attentions = [getattr(block, "attention", None) for block in first.blocks]  # the template's, for its settings

    # ---- the stages -------------------------------------------------------------------------

    def _post_norm(self, x: torch.Tensor, params: dict, prefix: str) -> torch.Tensor:
        """LayerNorm over D with each member's affine: x (K, N, D)."""
        normed = F.layer_norm(x, x.shape[-1:], eps=self.template.blocks[0].mlp_norm.eps)
        return torch.addcmul(params[f"{prefix}.bias"][:, None, :], normed, params[f"{prefix}.weight"][:, None, :])

    def _attention(self, x: torch.Tensor, frames: RealFrames, lengths: torch.Tensor, params: dict,
                   index: int) -> torch.Tensor:
        """Every member's self-attention on x (K, B, T, D) (padding zero) → its real frames (K, N, D)."""
        attention, prefix = self.attentions[index], f"blocks.{index}.attention"
        K, B, T, D = x.shape
        H = attention.heads
        qkv = frames.put(self._linear(frames.take(x), params[f"{prefix}.qkv.weight"], params[f"{prefix}.qkv.bias"]))
        q, k, v = qkv.view(K * B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (K·B, H, T, Dh) each
        scores = q @ k.transpose(-2, -1)  # (K·B, H, T, T)
        if isinstance(attention, RelativeKeyQueryAttention):
            scores = (scores + self._relative_positions(q, k, params, prefix, attention.max_distance, K)) * attention.scale
        else:  # relative-bias: SDPA's default scale, then the bias of each member's head and distance
            distance = relative_index(T, attention.max_distance, x.device).T  # (T, T): query i, key j → j − i
            bias = params[f"{prefix}.relative_bias"][:, distance].permute(0, 3, 1, 2)  # (K, H, T, T)
            scores = (scores * (D // H) ** -0.5).view(K, B, H, T, T) + bias[:, None].to(scores.dtype)
            scores = scores.view(K * B, H, T, T)
        # padded rows (length 0) keep their first key: a row of -inf would put NaN in the gradients
        keys = frame_mask(lengths.flatten().clamp(min=1), T)[:, None, None, :]  # (K·B, 1, 1, T)
        weights = torch.softmax(scores.masked_fill(~keys, float("-inf")), dim=-1)  # (K·B, H, T, T)
        out = frames.take((weights @ v).transpose(1, 2).reshape(K, B, T, D))  # (K, N, D)
        if f"{prefix}.proj.weight" in params:
            out = self._linear(out, params[f"{prefix}.proj.weight"], params[f"{prefix}.proj.bias"])
        return out

    @staticmethod
    def _relative_positions(q: torch.Tensor, k: torch.Tensor, params: dict, prefix: str, max_distance: int,
                            K: int) -> torch.Tensor:
        """BERT's relative_key_query terms q·E[i − j] + k·E[i − j] of each member's table E → (K·B, H, T, T)."""
        KB, H, T, Dh = q.shape
        rows = distance_rows(params[f"{prefix}.distance_embedding.weight"], T, max_distance)  # (K, 2T − 1, Dh)
        members = (K, KB // K, H, T, Dh)
        return relative_key_query(q.view(members), k.view(members), rows).view(KB, H, T, T)

    def _mlp(self, x: torch.Tensor, params: dict, prefix: str) -> torch.Tensor:
        """Post-norm MLP sub-block LN(x + MLP(x)) on real frames x (K, N, D)."""
        hidden = F.gelu(self._linear(x, params[f"{prefix}.mlp.0.weight"], params[f"{prefix}.mlp.0.bias"]))
        out = self._linear(hidden, params[f"{prefix}.mlp.2.weight"], params[f"{prefix}.mlp.2.bias"])
        return self._post_norm(x + out, params, f"{prefix}.mlp_norm")

    # ---- the whole head ---------------------------------------------------------------------

    def forward(self, params: dict, inputs, training: bool, rng_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every member on its own batch → (K, B_max, C); rows past a member's B_k are padding."""
        x, lengths, valid = self._padded(params, inputs, training, rng_states)  # (K, B, T, D), padding zero
        frames = RealFrames(valid)
        for index, shifts in enumerate(self.block_shifts):
            prefix = f"blocks.{index}"
            shortcut = self._shifted(x, valid, shifts, "shortcut")
            if self.attentions[index] is None:  # replacement: the shift is the whole token mixing
                mixed = frames.take(shortcut)  # (K, N, D)
            else:
                attended = self._attention(self._shifted(x, valid, shifts, "branch"), frames, lengths, params, index)
                mixed = self._post_norm(frames.take(shortcut) + attended, params, f"{prefix}.attention_norm")
            x = frames.put(self._mlp(mixed, params, prefix))  # (K, B, T, D), padding zero
        pooled = x.sum(dim=2) / lengths.clamp(min=1)[..., None].to(x.dtype)  # (K, B, D)
        return self._linear(pooled, params["classifier.weight"], params["classifier.bias"])  # (K, B, C)
