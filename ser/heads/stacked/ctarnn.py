"""K `CTARNNHead` members (seeds, folds of one CTA-RNN configuration) as one model.

The channel and temporal attention gate each member's own layers of its own batch, so they run
member by member (the arithmetic of the solo heads, no more). From the fused frames on, the
members are one computation: every Linear a batched product, the 2-layer BiLSTMs one grouped
recurrence (`recurrence.grouped_bilstm`), the attentive pooling one masked softmax. Dropout
(between the LSTM layers and before the classifier) draws each member's masks from its own RNG
state in the solo head's order.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ser.heads.ctarnn import CTARNNHead, channel_gates, temporal_gates
from ser.heads.masking import frame_mask
from ser.heads.stacked.base import MemberBatch, StackedHeads
from ser.heads.stacked.recurrence import grouped_bilstm


class StackedCTARNN(StackedHeads):
    """K `CTARNNHead` members of one configuration."""

    head_class = CTARNNHead

    @staticmethod
    def floats_per_frame(head: CTARNNHead, dim: int, frames: int) -> int:
        hidden = head.rnn.hidden_size
        # the gated layers and fused frames; per LSTM layer and direction its input, gates, cells, states
        return 3 * head.layer_sum.num_chosen * dim + 2 * dim + head.rnn.num_layers * 2 * (12 * hidden) + 4 * hidden

    def __init__(self, members: Sequence[CTARNNHead], device: torch.device):
        super().__init__(members, device)
        first = members[0]
        self.num_layers = first.rnn.num_layers
        self.dropout = first.dropout.p
        self.padding = first.temporal_conv.padding

    def _fused(self, params: dict, k: int, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Member k's channel- and temporal-gated layer sum of its batch x (B, L, T, D) → (B, T, D)."""
        p = {name: value[k] for name, value in params.items()}
        selected = self.template.layer_sum.select(x)  # (B, L', T, D)
        lengths = lengths.to(x.device)
        mask = frame_mask(lengths, selected.shape[2])  # (B, T)
        selected = selected * mask[:, None, :, None].to(selected.dtype)

        def mlp(z: torch.Tensor) -> torch.Tensor:
            hidden = F.relu(F.linear(z, p["channel_mlp.0.weight"], p["channel_mlp.0.bias"]))
            return F.linear(hidden, p["channel_mlp.2.weight"], p["channel_mlp.2.bias"])

        def conv(z: torch.Tensor) -> torch.Tensor:
            return F.conv1d(z, p["temporal_conv.weight"], p["temporal_conv.bias"], padding=self.padding)

        layer_gates = channel_gates(selected, mask, mlp)  # (B, L')
        frame_gates = temporal_gates(selected * layer_gates[:, :, None, None], mask, conv)  # (B, T)
        weights = (p["layer_sum.logits"].softmax(dim=0) if "layer_sum.logits" in p
                   else selected.new_ones(1))[None, :] * layer_gates  # (B, L')
        B, _, T, D = selected.shape
        fused = torch.bmm(weights[:, None, :].to(selected.dtype), selected.flatten(2)).view(B, T, D)
        return fused * frame_gates[:, :, None]

    def forward(self, params: dict, inputs: list[MemberBatch], training: bool,
                rng_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every member on its own batch → (K, B_max, C); rows past a member's B_k are padding."""
        rows = max(len(lengths) for _, lengths in inputs)
        frames = max(1, max(x.shape[2] for x, _ in inputs))
        fused = torch.stack([F.pad(self._fused(params, k, x, lengths), (0, 0, 0, frames - x.shape[2], 0, rows - len(lengths)))
                             for k, (x, lengths) in enumerate(inputs)])  # (K, B, T, D)
        lengths = torch.stack([F.pad(member_lengths.to(fused.device), (0, rows - len(member_lengths)))
                               for _, member_lengths in inputs])  # (K, B)
        valid = frame_mask(lengths.flatten(), frames).view(*lengths.shape, frames, 1).to(fused.dtype)  # (K, B, T, 1)
        x = fused * valid
        if training and self.spec_augment is not None:
            x = self._spec_augment(x, [l.to(x.device) for _, l in inputs], params, rng_states)
        K, B, T, D = x.shape
        h = self._linear(x.view(K, B * T, D), params["project.weight"], params["project.bias"]).view(K, B, T, -1) * valid
        rnn_masks, pool_mask = None, None
        if training and self.dropout > 0:  # one p: between the LSTM layers (when there are two) and before the classifier
            width = 2 * self.template.rnn.hidden_size
            *rnn_masks, pool_mask = self._dropout_scales(
                inputs, rng_states, self.dropout, lambda b, t: [(b, t, width)] * (self.num_layers - 1) + [(b, width)],
                x.device)  # (K, B, T, 2H) per layer gap, (K, B, 2H)
        h = grouped_bilstm(h, lengths, params, "rnn", self.num_layers, rnn_masks or None)  # (K, B, T, 2H)
        scores = torch.einsum("kbtd,kd->kbt", h, params["pool.score.weight"][:, 0]) + params["pool.score.bias"][:, :, None]  # (K, B, T)
        keys = frame_mask(lengths.flatten().clamp(min=1), T).view(K, B, T)  # padded rows keep one key: no NaN
        weights = scores.masked_fill(~keys, float("-inf")).softmax(dim=2)  # (K, B, T)
        pooled = torch.einsum("kbt,kbtd->kbd", weights, h)  # (K, B, 2H)
        if pool_mask is not None:
            pooled = pooled * pool_mask
        return self._linear(pooled, params["classifier.weight"], params["classifier.bias"])  # (K, B, C)
