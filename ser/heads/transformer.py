"""Transformer / Shiftformer: ShiftSER's post-norm blocks with relative-position attention, or a
temporal shift in place of attention (Shiftformer)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.base import Head
from ser.heads.cnn import shifted_block_indices
from ser.heads.masking import frame_mask, masked_mean, zero_padding
from ser.heads.spec_augment import REFERENCE_CLIP_FRAMES  # the reference's 374-frame clips
from ser.heads.temporal_shift import SHIFT_PLACEMENTS, TemporalShift, check_placement


def default_attention_heads(dim: int, preferred: int = 12) -> int:
    """12 heads when they divide dim (the reference), else the largest divisor of dim below 12."""
    return max(h for h in range(1, preferred + 1) if dim % h == 0)


ATTENTIONS = ("relative-key-query", "relative-bias")


def relative_index(length: int, reach: int, device: torch.device) -> torch.Tensor:
    """(T, T): for query i and key j, i − j clipped to ±reach, plus reach — the row of a table of
    2·reach + 1 distances. Its transpose gives j − i."""
    steps = torch.arange(length, device=device)
    return (steps[:, None] - steps[None, :]).clamp(-reach, reach) + reach


def distance_rows(table: torch.Tensor, length: int, max_distance: int) -> torch.Tensor:
    """The rows of a distance table (…, 2·max_distance + 1, Dh), row max_distance + d for distance
    d, for the distances −(T−1) … T−1 in order, clipped to ±max_distance → (…, 2T − 1, Dh)."""
    if length - 1 <= max_distance:
        return table[..., max_distance - (length - 1): max_distance + length, :]
    clipped = torch.arange(1 - length, length, device=table.device).clamp(-max_distance, max_distance) + max_distance
    return table.index_select(-2, clipped)


def by_distance(products: torch.Tensor) -> torch.Tensor:
    """(…, T, 2T − 1) products of each position a with the distances −(T−1) … T−1 → (…, T, T)
    whose [a, b] is the product at distance b − a. A strided view of the products: a gather would
    copy them, and its backward would scatter."""
    *batch, length, width = products.shape
    products = products.contiguous()
    return products.as_strided((*batch, length, length), (*products.stride()[:-2], width - 1, 1),
                               products.storage_offset() + length - 1)  # [a, b] at a·(2T−1) + (b − a) + T − 1


def relative_key_query(q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """BERT's relative_key_query terms q_i·E[i − j] + k_j·E[i − j] → (G, …, Ti, Tj), for q, k
    (G, …, T, Dh) and each group's rows (G, 2T − 1, Dh) = E[−(T−1)] … E[T−1] (see distance_rows)."""
    G, Dh = q.shape[0], q.shape[-1]
    rows = rows.to(q.dtype)

    def products(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:  # (G, …, T, 2T − 1)
        return torch.bmm(x.reshape(G, -1, Dh), table.transpose(1, 2)).view(*x.shape[:-1], -1)

    query_position = by_distance(products(q, rows.flip(1)))  # [i, j]: q_i·E[−(j − i)]
    key_position = by_distance(products(k, rows))  # [j, i]: k_j·E[i − j]
    return query_position + key_position.transpose(-2, -1)


class RelativeKeyQueryAttention(nn.Module):
    """ShiftSER's self-attention (its models/transformer.py): BERT's `relative_key_query` scores
    (q·k + q·r + k·r)·d^-0.5, where r = E[i − j] comes from ONE table E of 2·max_distance + 1
    vectors of the head size shared by all heads; one fused qkv Linear with bias, no output
    projection, no dropout on the attention probabilities. Padded keys are masked out.

    The reference's table covers exactly its 374-frame clips (max_distance 373) and fails on longer
    inputs; here distances beyond the table are clipped to its last entry, so any length runs.
    """

    def __init__(self, dim: int, heads: int, max_distance: int):
        super().__init__()
        self.heads, self.max_distance = heads, max_distance
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.distance_embedding = nn.Embedding(2 * max_distance + 1, dim // heads)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        rows = distance_rows(self.distance_embedding.weight, T, self.max_distance)  # (2T − 1, Dh)
        relative = relative_key_query(q[None], k[None], rows[None])[0]  # (B, H, T, T)
        scores = (q @ k.transpose(-2, -1) + relative) * self.scale  # (B, H, T, T)
        keys = frame_mask(lengths.to(x.device), T)[:, None, None, :]  # (B, 1, 1, T)
        weights = torch.softmax(scores.masked_fill(~keys, float("-inf")), dim=-1)  # (B, H, T, T)
        return (weights @ v).transpose(1, 2).reshape(B, T, D)  # (B, T, D)


class RelativeBiasAttention(nn.Module):
    """Multi-head self-attention with a learned bias per head over clipped relative distances,
    an output projection and a key padding mask (not the reference's; `attention="relative-bias"`)."""

    def __init__(self, dim: int, heads: int, dropout: float, max_distance: int):
        super().__init__()
        self.heads, self.dropout, self.max_distance = heads, dropout, max_distance
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_bias = nn.Parameter(torch.zeros(2 * max_distance + 1, heads))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        distance = relative_index(T, self.max_distance, x.device).T  # (T, T): query i, key j → j − i
        bias = self.relative_bias[distance].permute(2, 0, 1)  # (H, T, T)
        keys = frame_mask(lengths.to(x.device), T)[:, None, None, :]  # (B, 1, 1, T)
        mask = bias[None].to(q.dtype).masked_fill(~keys, float("-inf"))  # (B, H, T, T)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


def build_attention(kind: str, dim: int, heads: int, dropout: float, max_distance: int | None) -> nn.Module:
    """The attention named `kind`; max_distance None = 373 (key-query, the reference) or 64 (bias)."""
    if kind == "relative-key-query":
        return RelativeKeyQueryAttention(dim, heads, REFERENCE_CLIP_FRAMES - 1 if max_distance is None else max_distance)
    return RelativeBiasAttention(dim, heads, dropout, 64 if max_distance is None else max_distance)


class TransformerBlock(nn.Module):
    """Post-norm block. Attention sub-block by placement (A = dropout(MHSA)):
    none LN(x + A(x)); residual LN(shift(x) + A(x)); tsm-residual LN(x + A(shift(x)));
    inplace xs = shift(x), LN(xs + A(xs)); replacement x = shift(x) (no attention, no LN).
    Then x = LN(x + MLP(x)), MLP = Linear → GELU → Linear → dropout (the reference's Mlp)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float, attention: str,
                 max_distance: int | None, placement: str, shift: TemporalShift | None):
        super().__init__()
        self.placement, self.shift = placement, shift
        if placement != "replacement":
            self.attention = build_attention(attention, dim, heads, dropout, max_distance)
            self.attention_dropout = nn.Dropout(dropout)
            self.attention_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout),
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

    `attention`: relative-key-query (ShiftSER's, see RelativeKeyQueryAttention) or relative-bias;
    `max_relative_distance` None = 373 (key-query: the reference's 374-frame table) or 64 (bias).
    `shift_placement`: none, replacement (Shiftformer), residual, tsm-residual or inplace, in the
    blocks listed by `shift_blocks` (None = all). `n_div` sets the shifted fraction 1/n_div PER
    DIRECTION. `attention_heads` None = 12 when they divide in_dim, else the largest divisor < 12.
    `dropout` 0 is what the reference computes (its configured 0.1 never reaches its modules).
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
        dropout: float = 0.0,
        attention: str = "relative-key-query",
        max_relative_distance: int | None = None,
        shift_placement: str = "none",
        shift_blocks: Sequence[int] | None = None,
        n_div: int = 4,
        bidirectional: bool = False,
        shift_stride: int = 1,
    ):
        super().__init__(in_dim, num_layers, layers, layer_norm, spec_augment)
        check_placement(shift_placement, SHIFT_PLACEMENTS, "transformer")
        if attention not in ATTENTIONS:
            raise UserInputError(f"unknown attention {attention!r}", f"choose one of: {', '.join(ATTENTIONS)}")
        if max_relative_distance is not None and max_relative_distance < 1:
            raise UserInputError(f"max_relative_distance must be at least 1, got {max_relative_distance}")
        heads = attention_heads or default_attention_heads(in_dim)
        if in_dim % heads:
            raise UserInputError(f"{heads} attention heads do not divide the feature size {in_dim}")
        shifted = shifted_block_indices(num_blocks, shift_blocks, shift_placement)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                in_dim, heads, mlp_ratio, dropout, attention, max_relative_distance,
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
