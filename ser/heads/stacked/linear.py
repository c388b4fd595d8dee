"""K SUPERB linear probes as one model, averaged over time before their first Linear."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ser.heads.linear import LinearHead
from ser.heads.masking import layer_means
from ser.heads.stacked.base import MemberBatch, StackedHeads, sharing_a_batch


class StackedLinear(StackedHeads):
    """K SUPERB linear probes (`LinearHead`: layer sum → Linear → mean over the real frames → Linear).

    The layer sum and the first Linear are linear maps per frame, so they commute with the mean
    over time: mean_t(W Σ_l w_l x_lt + b) = W Σ_l w_l mean_t(x_lt) + b. Without SpecAugment the
    stacked probe therefore averages each input batch's layers over time once, (B, L, D), and
    every member works on those means: one pass over the input for all K members, where K solo
    probes each sum and project every frame. SpecAugment changes frames at random per member, so
    with it the members' frames are averaged after their masks.
    """

    head_class = LinearHead

    @staticmethod
    def floats_per_frame(head: LinearHead, dim: int, frames: int) -> int:
        return 2 * dim + 3 * head.project.out_features

    def _pooled(self, params: dict, inputs: list[MemberBatch]) -> torch.Tensor:
        """Each member's layer sum averaged over the real frames of its batch → (K, B_max, D)."""
        logits = params.get("layer_sum.logits")
        rows = max(len(lengths) for _, lengths in inputs)
        pooled: list[torch.Tensor | None] = [None] * len(inputs)
        for members in sharing_a_batch(inputs):
            x, lengths = inputs[members[0]]
            means = layer_means(self.template.layer_sum.select(x), lengths)  # (B, L', D)
            B = len(means)
            layer_weights = (torch.ones(len(members), 1, dtype=x.dtype, device=x.device) if logits is None
                             else logits[members].softmax(dim=1).to(x.dtype))  # (G, L')
            summed = torch.einsum("gl,bld->gbd", layer_weights, means)  # (G, B, D)
            for k, member_means in zip(members, summed.unbind(0)):
                pooled[k] = F.pad(member_means, (0, 0, 0, rows - B))  # (B_max, D)
        return torch.stack(pooled)  # (K, B_max, D)

    def forward(self, params: dict, inputs: list[MemberBatch], training: bool,
                rng_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every member on its own batch → (K, B_max, C); rows past a member's B_k are padding."""
        if training and self.spec_augment is not None:
            x, lengths, _ = self._padded(params, inputs, training, rng_states)  # (K, B, T, D), padding zero
            pooled = x.sum(dim=2) / lengths.clamp(min=1)[..., None].to(x.dtype)  # (K, B, D)
        else:
            pooled = self._pooled(params, inputs)  # (K, B, D)
        hidden = self._linear(pooled, params["project.weight"], params["project.bias"])  # (K, B, H): the mean of W x + b
        return self._linear(hidden, params["classifier.weight"], params["classifier.bias"])  # (K, B, C)
