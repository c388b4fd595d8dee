"""What the stacked families share: members' batches padded into one (K, B, T, D) tensor, their
layer sums and SpecAugment, the per-member temporal shift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.masking import frame_mask
from ser.heads.spec_augment import span_masks

MemberBatch = tuple[torch.Tensor, torch.Tensor]  # x (B, L, T, D), lengths (B,); B may be 0


def sharing_a_batch(inputs: list[MemberBatch]) -> list[list[int]]:
    """The members, grouped by the batch object they were given (members of one fold and seed
    draw the same batches): each group's layers are read once."""
    groups: dict[int, list[int]] = {}
    for k, (x, _) in enumerate(inputs):
        groups.setdefault(id(x), []).append(k)
    return list(groups.values())


@dataclass(frozen=True)
class MemberShift:
    """How one member shifts in one block: channels [0, fold) delayed, [fold, 2·fold) advanced when
    `bidirectional`; applied to the shortcut and/or the branch input (its placement)."""

    fold: int
    bidirectional: bool
    on_shortcut: bool
    on_branch: bool


def _member_shift(head, block: int, dim: int) -> MemberShift | None:
    placement = head.blocks[block].placement
    if placement == "none":
        return None
    shift = head.blocks[block].shift
    return MemberShift(dim // shift.n_div, shift.bidirectional, placement in ("residual", "inplace", "replacement"),
                       placement in ("tsm-residual", "inplace"))


def block_shifts(members: Sequence, dim: int) -> tuple[int, list[list[MemberShift | None]]]:
    """The stride every member shifts by (1 when none shifts) and, per block and per member, its
    shift there (None: none)."""
    strides = {block.shift.stride for head in members for block in head.blocks if block.shift is not None}
    if len(strides) > 1:
        raise UserInputError("members of one stacked model must share the shift stride")
    shifts = [[_member_shift(head, index, dim) for head in members] for index in range(len(members[0].blocks))]
    return (strides.pop() if strides else 1), shifts


class StackedHeads:
    """What the stacked families share. Each family defines `head_class`, `member_options`,
    `floats_per_frame(head, dim, frames)` (the activations a member keeps per frame for the
    backward pass, beyond its input, its batches `frames` long) and
    `forward(params, inputs, training, rng_states)` → (K, B, C), with stacked parameters
    `params[name]` (K, …) named as in the members' state dicts."""

    head_class: type  # the head each member is
    member_options: tuple[str, ...] = ("name",)  # constructor options in which members may differ

    @staticmethod
    def stacks(head) -> bool:
        """Whether this head can be a member at all (else it trains alone)."""
        return True

    @staticmethod
    def graph(head) -> tuple:
        """What members must share beyond their options: which parameters exist."""
        return ()

    def __init__(self, members: Sequence, device: torch.device):
        self.template = members[0]
        self.spec_augment = members[0].spec_augment
        self.size = len(members)

    def release(self) -> None:
        """Give the members back buffers of their own (for families whose buffers are views of a
        stacked tensor), before their heads are saved or used alone."""

    def _layer_sums(self, params: dict, inputs: list[MemberBatch]) -> list[torch.Tensor]:
        """Each member's weighted layer sum of its own batch (then its input projection, if the
        heads have one) → [(B_k, T_k, D)]; members that share a batch object are summed in one
        batched product."""
        layer_sum = self.template.layer_sum
        logits = params.get("layer_sum.logits")
        sums: list[torch.Tensor | None] = [None] * len(inputs)
        for members in sharing_a_batch(inputs):
            selected = layer_sum.select(inputs[members[0]][0])  # (B, L', T, D)
            B, L, T, D = selected.shape
            if logits is None:
                for k in members:
                    sums[k] = selected[:, 0]
                continue
            weights = logits[members].softmax(dim=1).to(selected.dtype)  # (G, L')
            # a batched product as the solo layer sum does: matmul would copy the input transposed
            summed = torch.bmm(weights.expand(B, -1, -1), selected.flatten(2)).view(B, len(members), T, D)  # (B, G, T, D)
            for k, member_sum in zip(members, summed.unbind(1)):
                sums[k] = member_sum
        if "input_projection.weight" in params:  # each member's own Linear(D, D), as its solo head
            weight, bias = params["input_projection.weight"], params["input_projection.bias"]  # (K, D, D), (K, D)
            sums = [F.linear(summed, weight[k], bias[k]) for k, summed in enumerate(sums)]
        return sums

    def _spec_augment(self, x: torch.Tensor, lengths: list[torch.Tensor], params: dict,
                      rng_states: list[torch.Tensor]) -> torch.Tensor:
        """SpecAugment of x (K, B, T, D), member k's masks drawn from rng_states[k] (updated in place)."""
        augment = self.spec_augment
        K, B, T, D = x.shape
        time = torch.zeros(K, B, T, dtype=torch.bool, device=x.device)
        channels = torch.zeros(K, B, D, dtype=torch.bool, device=x.device)
        outside = rng_state(x.device)
        try:
            for k, member_lengths in enumerate(lengths):
                n = len(member_lengths)
                if n == 0:
                    continue
                set_rng_state(x.device, rng_states[k])
                time[k, :n] = span_masks(member_lengths, T, augment.time_prob, augment.time_span, augment.min_time_masks,
                                        augment.time_clip_frames)
                full = torch.full((n,), D, device=x.device)
                channels[k, :n] = span_masks(full, D, augment.channel_prob, augment.channel_span,
                                             augment.min_channel_masks)
                rng_states[k] = rng_state(x.device)
        finally:
            set_rng_state(x.device, outside)
        embedding = params["spec_augment.mask_embedding"].to(x.dtype)[:, None, None, :]  # (K, 1, 1, D)
        x = torch.where(time[..., None], embedding, x)
        return x.masked_fill(channels[:, :, None, :], 0.0)

    def _padded(self, params: dict, inputs: list[MemberBatch], training: bool,
                rng_states: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every member's layer sum of its batch, padded into x (K, B, T, D) (padding zero, SpecAugment
        applied in training), with lengths (K, B) (0 marks a padded row) and valid (K, B, T, 1)."""
        sums = self._layer_sums(params, inputs)  # [(B_k, T_k, D)]
        rows = max(len(lengths) for _, lengths in inputs)
        frames = max(1, max(s.shape[1] for s in sums))
        # Built with pad + stack, not slice writes into a zero tensor: a slice write's backward
        # clones the whole (K, B, T, D) gradient once per member.
        x = torch.stack([F.pad(summed, (0, 0, 0, frames - summed.shape[1], 0, rows - summed.shape[0]))
                         for summed in sums])  # (K, B, T, D)
        lengths = torch.stack([F.pad(member_lengths.to(x.device), (0, rows - len(member_lengths)))
                               for _, member_lengths in inputs])  # (K, B)
        valid = frame_mask(lengths.flatten(), frames).view(len(inputs), rows, frames)[..., None].to(x.dtype)
        x = x * valid  # (K, B, T, D)
        if training and self.spec_augment is not None:
            x = self._spec_augment(x, [l.to(x.device) for _, l in inputs], params, rng_states)
        return x, lengths, valid

    def _dropout_scales(self, inputs: list[MemberBatch], rng_states: list[torch.Tensor], p: float,
                        shapes: Callable[[int, int], list[tuple[int, ...]]], device: torch.device) -> list[torch.Tensor]:
        """Each member's dropout scale factors (0 or 1/(1-p)), drawn from its RNG state as F.dropout
        draws them in the solo head: `shapes(B_k, T_k)` lists the tensors that head drops, in order.
        Each is zero-padded to the largest member's shape and stacked → [(K, …)]. Members without a
        batch draw nothing. Call after `_padded`, whose SpecAugment draws come first."""
        rows, frames = max(len(lengths) for _, lengths in inputs), max(1, max(x.shape[2] for x, _ in inputs))
        padded = shapes(rows, frames)
        scales = [torch.zeros(len(inputs), *shape, device=device) for shape in padded]
        outside = rng_state(device)
        try:
            for k, (x, lengths) in enumerate(inputs):
                if len(lengths) == 0:
                    continue
                set_rng_state(device, rng_states[k])
                for scale, shape in zip(scales, shapes(len(lengths), x.shape[2])):
                    scale[k][tuple(slice(0, n) for n in shape)] = torch.empty(shape, device=device).bernoulli_(1 - p).div_(1 - p)
                rng_states[k] = rng_state(device)
        finally:
            set_rng_state(device, outside)
        return scales

    def _shifted(self, x: torch.Tensor, valid: torch.Tensor, shifts: list, where: str) -> torch.Tensor:
        """x (K, B, T, D) with the shift of each member whose placement puts it `where` ("shortcut" or
        "branch"; a replacement shift is on the shortcut) applied to its own channels; padding stays
        zero. x itself when no member does. Needs `self.stride` (see block_shifts)."""
        moved = [shift is not None and getattr(shift, f"on_{where}") for shift in shifts]
        if not any(moved):
            return x
        T = x.shape[2]
        step = min(self.stride, T)
        members = list(x.unbind(0))  # [(B, T, D)]; unbind, not x[k]: each x[k]'s backward fills a (K, B, T, D) zero tensor
        for k, shift in enumerate(shifts):
            if moved[k]:
                member, f = members[k], shift.fold
                parts = [F.pad(member[:, : T - step, :f], (0, 0, step, 0)) * valid[k]]  # (B, T, f): out[t] = x[t - step]
                if shift.bidirectional:  # out[t] = x[t + step]; x is zero past the length already
                    parts.append(F.pad(member[:, step:, f : 2 * f], (0, 0, 0, step)))
                parts.append(member[:, :, len(parts) * f :])
                members[k] = torch.cat(parts, dim=-1)  # (B, T, D)
        return torch.stack(members)  # (K, B, T, D)

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Member k's Linear (weight (K, D_out, D_in), bias (K, D_out)) on x[k]: (K, N, D_in) →
        (K, N, D_out) as one batched matmul."""
        return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))


def rng_state(device: torch.device) -> torch.Tensor:
    """The state of the global generator that draws random numbers on `device`."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
