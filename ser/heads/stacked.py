"""K heads of one family as ONE computation: batched matmuls, grouped kernels, per-member masks.

Two families stack: `StackedCNN` (cnn/shiftcnn) and `StackedLinear` (the SUPERB linear probe).
Each holds every member's parameters stacked on a leading axis K and runs all of them in one
forward pass; `stacked_model` picks the family. What they share (`StackedHeads`): each member's
layer sum of its own batch, the batches padded to one (K, B, T, D) tensor, SpecAugment drawn
from each member's own RNG state. The linear probe averages over time first (see StackedLinear).

A sweep's grid points of the CNN family share one graph; they differ only in where and how many
channels shift. For them:
- the depthwise convs of all members are one grouped conv over K·D channels, every Linear one
  batched matmul, every LayerNorm one call (its affine folded into the next Linear or the pooled
  mean);
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

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.cnn import CNNHead
from ser.heads.linear import LinearHead
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


def stack_key(head) -> tuple | None:
    """What members of one stacked model must share (None: this head cannot be stacked)."""
    for family, stacked in STACKED.items():
        if type(head) is stacked.head_class:
            options = {k: v for k, v in head.constructor_kwargs.items() if k not in stacked.member_options}
            return (family, tuple(sorted((k, repr(v)) for k, v in options.items())))
    return None


def stacked_model(members: Sequence, device: torch.device) -> "StackedHeads":
    """The stacked forward pass of `members`, heads of one family with one graph."""
    keys = {stack_key(head) for head in members}
    if None in keys or len(keys) != 1:
        raise UserInputError("these heads cannot be trained as one stacked model", "train them one by one")
    return STACKED[keys.pop()[0]](members, device)


def activation_floats_per_frame(head, num_layers: int, dim: int) -> int:
    """Floats one member of a stacked model keeps per frame of its batch in a training step: its
    input (kept for the layer-sum gradient) and the activations autograd keeps."""
    return num_layers * dim + STACKED[stack_key(head)[0]].floats_per_frame(head, dim)


@dataclass(frozen=True)
class MemberShift:
    """How one member shifts in one block: channels [0, fold) delayed, [fold, 2·fold) advanced when
    `bidirectional`; applied to the shortcut and/or the branch input (its placement)."""

    fold: int
    bidirectional: bool
    on_shortcut: bool
    on_branch: bool


def _member_shift(head: CNNHead, block: int, dim: int) -> MemberShift | None:
    placement = head.blocks[block].placement
    if placement == "none":
        return None
    shift = head.blocks[block].shift
    return MemberShift(dim // shift.n_div, shift.bidirectional, placement in ("residual", "inplace"),
                       placement in ("tsm-residual", "inplace"))


class RealFrames:
    """Where each member's real frames lie in its flattened (B·T) frame axis, so that per-frame
    layers run on (K, N, D) — N the most real frames of any member — instead of (K, B, T, D)."""

    def __init__(self, valid: torch.Tensor):
        K, B, T, _ = valid.shape  # valid (K, B, T, 1): 1 on real frames
        real = valid.reshape(K, B * T) > 0  # (K, B·T)
        counts = real.sum(dim=1)  # (K,)
        width = max(1, int(counts.max()))
        # the real positions first, in order; slots past a member's count point at frame 0 (masked)
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)[:, :width]  # (K, N)
        self.slots = (torch.arange(width, device=valid.device)[None, :] < counts[:, None])[..., None]  # (K, N, 1)
        self.index = torch.where(self.slots[..., 0], order, 0)  # (K, N)
        self.shape = (K, B, T)

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """x (K, B, T, D) → its real frames (K, N, D)."""
        K, B, T, D = x.shape
        return x.reshape(K, B * T, D).gather(1, self.index[..., None].expand(-1, -1, D))

    def put(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (K, N, D) back in place → (K, B, T, D), padding zero."""
        K, B, T = self.shape
        D = frames.shape[-1]
        kept = frames * self.slots.to(frames.dtype)  # unused slots add zero to frame 0
        out = frames.new_zeros(K, B * T, D).scatter_add(1, self.index[..., None].expand(-1, -1, D), kept)
        return out.view(K, B, T, D)


class StackedHeads:
    """What the stacked families share. Each family defines `head_class`, `member_options`,
    `floats_per_frame(head, dim)` (the activations a member keeps per frame for the backward pass,
    beyond its input) and `forward(params, inputs, training, rng_states)` → (K, B, C), with stacked
    parameters `params[name]` (K, …) named as in the members' state dicts."""

    head_class: type  # the head each member is
    member_options: tuple[str, ...] = ("name",)  # constructor options in which members may differ

    def __init__(self, members: Sequence, device: torch.device):
        self.template = members[0]
        self.spec_augment = members[0].spec_augment
        self.size = len(members)

    def _layer_sums(self, params: dict, inputs: list[MemberBatch]) -> list[torch.Tensor]:
        """Each member's weighted layer sum of its own batch → [(B_k, T_k, D)]; members that share
        a batch object are summed in one matmul."""
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
            summed = torch.matmul(weights, selected.flatten(2)).view(B, len(members), T, D)  # (B, G, T, D), no input copy
            for k, member_sum in zip(members, summed.unbind(1)):
                sums[k] = member_sum
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

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Member k's Linear (weight (K, D_out, D_in), bias (K, D_out)) on x[k]: (K, N, D_in) →
        (K, N, D_out) as one batched matmul."""
        return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))


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
    def floats_per_frame(head: LinearHead, dim: int) -> int:
        return 2 * dim + 3 * head.project.out_features

    def _pooled(self, params: dict, inputs: list[MemberBatch]) -> torch.Tensor:
        """Each member's layer sum averaged over the real frames of its batch → (K, B_max, D)."""
        logits = params.get("layer_sum.logits")
        rows = max(len(lengths) for _, lengths in inputs)
        pooled: list[torch.Tensor | None] = [None] * len(inputs)
        for members in sharing_a_batch(inputs):
            x, lengths = inputs[members[0]]
            selected = self.template.layer_sum.select(x)  # (B, L', T, D)
            B, L, T, D = selected.shape
            weights = frame_mask(lengths.to(x.device), T).to(x.dtype) / lengths.clamp(min=1)[:, None].to(x.dtype)  # (B, T)
            means = torch.bmm(weights[:, None, :], selected.transpose(1, 2).reshape(B, T, L * D)).view(B, L, D)
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


class StackedCNN(StackedHeads):
    """K `CNNHead` members (cnn and shiftcnn of any shift proportion, placement and direction)."""

    head_class = CNNHead
    member_options = ("name", "shift_placement", "shift_blocks", "n_div", "bidirectional")

    @staticmethod
    def floats_per_frame(head: CNNHead, dim: int) -> int:
        kw = head.constructor_kwargs
        return kw["num_blocks"] * dim * (3 * kw["mlp_ratio"] + 12) + 8 * dim

    def __init__(self, members: Sequence[CNNHead], device: torch.device):
        super().__init__(members, device)
        first = members[0]
        self.dim = first.classifier.in_features
        self.kernel_size = first.blocks[0].dwconv.kernel_size[0]
        strides = {block.shift.stride for head in members for block in head.blocks if block.shift is not None}
        self.stride = strides.pop() if strides else 1
        if strides:
            raise UserInputError("members of one stacked model must share the shift stride")
        # per block, per member: its shift there (None: none)
        self.block_shifts = [[_member_shift(head, index, self.dim) for head in members] for index in range(len(first.blocks))]

    # ---- the stages -------------------------------------------------------------------------

    def _shifted(self, x: torch.Tensor, valid: torch.Tensor, shifts: list, where: str) -> torch.Tensor:
        """x (K, B, T, D) with the shift of each member whose placement puts it `where` ("shortcut" or
        "branch") applied to its own channels; padding stays zero. x itself when no member does."""
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

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm over D without its affine (folded into what follows): (K, …, D)."""
        return F.layer_norm(x, x.shape[-1:], eps=self.template.norm.eps)

    def _branch(self, x: torch.Tensor, frames: RealFrames, params: dict, prefix: str) -> torch.Tensor:
        """F(x) of every member's block for x (K, B, T, D) with zero padding: depthwise conv →
        LayerNorm → MLP (on the real frames), padding zero. The norm's affine is folded into the
        first Linear: W1 (γ ⊙ n + β) + b1 = (W1 diag γ) n + (W1 β + b1)."""
        K, B, T, D = x.shape
        grouped = x.permute(1, 0, 3, 2).reshape(B, K * D, T)  # (B, K·D, T)
        weight = params[f"{prefix}.dwconv.weight"].reshape(K * D, 1, -1)  # (K·D, 1, kernel)
        bias = params[f"{prefix}.dwconv.bias"].reshape(K * D)
        y = F.conv1d(grouped, weight, bias, padding=self.kernel_size // 2, groups=K * D)  # (B, K·D, T)
        real = frames.take(y.view(B, K, D, T).permute(1, 0, 3, 2))  # (K, N, D)
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


STACKED: dict[str, type[StackedHeads]] = {"cnn": StackedCNN, "linear": StackedLinear}


def rng_state(device: torch.device) -> torch.Tensor:
    """The state of the global generator that draws random numbers on `device`."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
