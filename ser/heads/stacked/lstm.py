"""K `LSTMHead` members (lstm and shiftlstm of any shift proportion and direction) as one model.

The members' BiLSTMs are one grouped recurrence (`recurrence.grouped_bilstm`: 2K groups, every
step one batched product); the in-place shift of each member's input is its own (which channels
move, in which direction), as in the stacked CNN; the LayerNorm runs on each member's real
frames only. Members' batches are padded to the longest one: the forward direction never sees a
frame after its own, and the backward direction runs over each sequence reversed within its
length, so padding reaches neither (as in the solo head).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.lstm import LSTMHead
from ser.heads.stacked.base import MemberBatch, MemberShift, StackedHeads
from ser.heads.stacked.real_frames import RealFrames
from ser.heads.stacked.recurrence import grouped_bilstm


class StackedLSTM(StackedHeads):
    """K `LSTMHead` members with one hidden size and layer count."""

    head_class = LSTMHead
    member_options = ("name", "shift_placement", "n_div", "bidirectional")

    @staticmethod
    def floats_per_frame(head: LSTMHead, dim: int, frames: int) -> int:
        hidden = head.lstm.hidden_size
        # per layer and direction: the reversed input, input gates, gate activations, cells, states
        return head.lstm.num_layers * 2 * (dim + 4 * hidden + 4 * hidden + 2 * hidden) + 6 * hidden

    def __init__(self, members: Sequence[LSTMHead], device: torch.device):
        super().__init__(members, device)
        self.num_layers, self.dropout = members[0].lstm.num_layers, members[0].lstm.dropout
        strides = {head.shift.stride for head in members if head.shift is not None}
        if len(strides) > 1:
            raise UserInputError("members of one stacked model must share the shift stride")
        self.stride = strides.pop() if strides else 1
        dim = members[0].lstm.input_size
        self.shifts = [None if head.shift is None else
                       MemberShift(dim // head.shift.n_div, head.shift.bidirectional, False, True) for head in members]

    def forward(self, params: dict, inputs: list[MemberBatch], training: bool,
                rng_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every member on its own batch → (K, B_max, C); rows past a member's B_k are padding."""
        x, lengths, valid = self._padded(params, inputs, training, rng_states)  # (K, B, T, D), padding zero
        x = self._shifted(x, valid, self.shifts, "branch")  # LSTM(shift(x)): the in-place placement
        masks = None
        if training and self.num_layers > 1 and self.dropout > 0:  # between the LSTM layers, drawn after SpecAugment
            width = 2 * self.template.lstm.hidden_size
            masks = self._dropout_scales(inputs, rng_states, self.dropout,
                                         lambda b, t: [(b, t, width)] * (self.num_layers - 1), x.device)
        h = grouped_bilstm(x, lengths, params, "lstm", self.num_layers, masks)  # (K, B, T, 2H), padding zero
        frames = RealFrames(valid)
        normed = F.layer_norm(frames.take(h), h.shape[-1:], eps=self.template.norm.eps)  # (K, N, 2H), affine after the mean
        pooled = frames.put(normed).sum(dim=2) / lengths.clamp(min=1)[..., None].to(h.dtype)  # (K, B, 2H)
        pooled = pooled * params["norm.weight"][:, None, :] + params["norm.bias"][:, None, :]  # the mean of γ n + β
        return self._linear(pooled, params["classifier.weight"], params["classifier.bias"])  # (K, B, C)
