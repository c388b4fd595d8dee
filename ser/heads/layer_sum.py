"""Weighted sum of a backbone's hidden layers (SUPERB's featurizer), the first stage of every head."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ser.errors import UserInputError


def chosen_layers(num_layers: int, layers: int | Sequence[int] | None) -> list[int]:
    """Normalise a `layers` option (None = all, an index, or a list; negatives count from the end)."""
    if layers is None:
        return list(range(num_layers))
    requested = [layers] if isinstance(layers, int) else list(layers)
    if not requested:
        raise UserInputError("--layers is empty", "give layer indices, e.g. --layers 6 or --layers 0,4,8")
    chosen = []
    for index in requested:
        if not -num_layers <= index < num_layers:
            raise UserInputError(
                f"layer {index} does not exist", f"the features have {num_layers} layers (0..{num_layers - 1})"
            )
        chosen.append(index % num_layers)
    if len(set(chosen)) != len(chosen):
        raise UserInputError(f"--layers repeats a layer: {requested}", "name each layer once")
    return chosen


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum over layers: (B, L, T, D) → (B, T, D).

    The weights are the softmax of zero-initialised logits (a uniform start), learned with the head.
    `layers` keeps a subset (None = all); a single layer passes through with no weights.
    `layer_norm` normalises every layer over D (no affine parameters) before the sum.
    """

    def __init__(self, num_layers: int, layers: int | Sequence[int] | None = None, layer_norm: bool = False):
        super().__init__()
        self.num_layers = num_layers
        self.layer_norm = layer_norm
        chosen = chosen_layers(num_layers, layers)
        self.register_buffer("chosen", torch.tensor(chosen, dtype=torch.long), persistent=False)
        if len(chosen) > 1:
            self.logits = nn.Parameter(torch.zeros(len(chosen)))
        else:
            self.register_parameter("logits", None)

    @property
    def num_chosen(self) -> int:
        return len(self.chosen)

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The chosen layers of x (B, L, T, D) → (B, L', T, D), layer-normalised if asked."""
        if x.shape[1] != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers on axis 1, got input of shape {tuple(x.shape)}")
        if self.num_chosen < self.num_layers:
            x = x.index_select(1, self.chosen)  # (B, L', T, D)
        if self.layer_norm:
            x = F.layer_norm(x, x.shape[-1:])
        return x

    def chosen_weights(self) -> torch.Tensor:
        """Softmaxed weights over the chosen layers, (L',)."""
        if self.logits is None:
            return torch.ones(1, device=self.chosen.device)
        return self.logits.softmax(dim=0)

    def combine(self, selected: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        """Sum selected layers (B, L', T, D) with the weights, optionally times per-utterance gates (B, L')."""
        weights = self.chosen_weights().to(selected.dtype)[None, :]  # (1, L')
        if gates is not None:
            weights = weights * gates  # (B, L')
        elif self.logits is None:
            return selected[:, 0]  # (B, T, D)
        B, _, T, D = selected.shape
        weights = weights.expand(B, -1)[:, None, :]  # (B, 1, L')
        return torch.bmm(weights, selected.flatten(2)).view(B, T, D)  # (B, 1, T·D) → (B, T, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.select(x))

    def weights(self) -> torch.Tensor:
        """Softmaxed weights over all L layers, (L,): zero for layers left out, one-hot for a single layer."""
        full = torch.zeros(self.num_layers, device=self.chosen.device)
        return full.index_copy(0, self.chosen, self.chosen_weights().detach().to(full.dtype))
