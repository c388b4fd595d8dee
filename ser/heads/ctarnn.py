"""CTA-RNN (Chen et al., 2022) — a RECONSTRUCTION: only the paper's abstract was available."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ser.heads.base import Head
from ser.heads.lstm import run_lstm_over_lengths
from ser.heads.masking import AttentivePooling, frame_mask, zero_padding


def channel_gates(selected: torch.Tensor, mask: torch.Tensor, mlp: Callable) -> torch.Tensor:
    """Per-utterance layer gates from selected layers (B, L', T, D) with padding zero and frame mask
    (B, T): sigmoid(mlp(masked mean) + mlp(masked max)) over (time, features) → (B, L')."""
    real = mask[:, None, :, None]  # (B, 1, T, 1)
    count = mask.sum(dim=1).to(selected.dtype) * selected.shape[-1]  # (B,)
    mean = (selected * real).sum(dim=(2, 3)) / count[:, None]  # (B, L')
    peak = selected.masked_fill(~real, float("-inf")).amax(dim=(2, 3))  # (B, L')
    return torch.sigmoid(mlp(mean) + mlp(peak))


def temporal_gates(gated: torch.Tensor, mask: torch.Tensor, conv: Callable) -> torch.Tensor:
    """Per-frame gates from gated layers (B, L', T, D): sigmoid(conv([mean; max] over layers and
    features)) → (B, T); padded frames give 0 descriptors."""
    mean = gated.mean(dim=(1, 3))  # (B, T)
    peak = gated.amax(dim=(1, 3))  # (B, T)
    descriptors = torch.stack([mean, peak], dim=1) * mask[:, None, :].to(gated.dtype)  # (B, 2, T)
    return torch.sigmoid(conv(descriptors)).squeeze(1)  # (B, T)


class CTARNNHead(Head):
    """Channel- and temporal-attention RNN over several backbone layers. A reconstruction from the
    abstract (the exact equations are unpublished), not the authors' model:

    1. channel attention over layers: masked mean and max over (time, features) per layer →
       shared MLP → sigmoid → a gate a_l per utterance and layer;
    2. temporal attention: mean and max over (layers, features) of the gated layers per frame →
       Conv1d(2, 1, k) → sigmoid → a gate b_t per frame;
    3. fusion: Σ_l w_l a_l x_l, times b_t (w = the weighted layer sum's softmax weights);
    4. Linear(D, hidden) → 2-layer BiLSTM (true lengths) → attentive pooling → dropout → Linear.
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
        hidden_size: int = 128,
        rnn_layers: int = 2,
        temporal_kernel: int = 7,
        dropout: float = 0.1,
    ):
        super().__init__(in_dim, num_layers, layers, layer_norm, spec_augment)
        chosen = self.layer_sum.num_chosen
        squeezed = max(4, chosen // 2)  # a few hidden units, so the gate cannot die at init
        self.channel_mlp = nn.Sequential(nn.Linear(chosen, squeezed), nn.ReLU(), nn.Linear(squeezed, chosen))
        self.temporal_conv = nn.Conv1d(2, 1, temporal_kernel, padding=temporal_kernel // 2)
        self.project = nn.Linear(in_dim, hidden_size)
        self.rnn = nn.LSTM(
            hidden_size, hidden_size, num_layers=rnn_layers, batch_first=True, bidirectional=True,
            dropout=dropout if rnn_layers > 1 else 0.0,
        )
        self.pool = AttentivePooling(2 * hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden_size, num_classes)

    def channel_gates(self, selected: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-utterance layer gates from selected (B, L', T, D) → (B, L')."""
        return channel_gates(selected, mask, self.channel_mlp)

    def temporal_gates(self, gated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame gates from gated layers (B, L', T, D) → (B, T)."""
        return temporal_gates(gated, mask, self.temporal_conv)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        selected = self.layer_sum.select(x)  # (B, L', T, D)
        lengths = lengths.to(x.device)
        mask = frame_mask(lengths, selected.shape[2])  # (B, T)
        selected = selected * mask[:, None, :, None].to(selected.dtype)
        layer_gates = self.channel_gates(selected, mask)  # (B, L')
        frame_gates = self.temporal_gates(selected * layer_gates[:, :, None, None], mask)  # (B, T)
        fused = self.layer_sum.combine(selected, layer_gates) * frame_gates[:, :, None]  # (B, T, D)
        h = self.project(self.augment(fused, lengths))  # (B, T, hidden)
        h = run_lstm_over_lengths(self.rnn, zero_padding(h, lengths), lengths)  # (B, T, 2·hidden)
        return self.classifier(self.dropout(self.pool(h, lengths)))  # (B, C)
