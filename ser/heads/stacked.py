"""K CNN/ShiftCNN heads as ONE computation: grouped kernels, per-member channel masks and gates.

A sweep's grid points of the CNN family share one graph; they differ only in where and how many
channels shift. `StackedCNN` holds every member's parameters stacked on a leading axis K and
runs all of them in one forward pass:
- the depthwise convs of all members are one grouped conv over K·D channels, every Linear one
  batched matmul, LayerNorm one call plus a per-member affine;
- the temporal shift becomes per-member channel masks (which channels are delayed/advanced:
  the proportion and direction) and per-block gates (whether the shortcut and/or the branch
  input is shifted: the placement), so `cnn` (no shift), residual, tsm-residual and in-place
  members of any proportion batch together;
- each member gets its own batch (its seed's data order, its fold's rows); batches are padded to
  the longest one in time and in batch size (padded rows have length 0) — every head is
  padding-invariant, so a member computes what its solo head computes;
- SpecAugment draws each member's masks from that member's own torch RNG state, in the order
  the solo head draws them, so a member's random masks are the solo run's.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.cnn import CNNHead
from ser.heads.masking import frame_mask
from ser.heads.spec_augment import span_masks

SHIFT_OPTIONS = ("name", "shift_placement", "shift_blocks", "n_div", "bidirectional")

MemberBatch = tuple[torch.Tensor, torch.Tensor]  # x (B, L, T, D), lengths (B,); B may be 0


def stack_key(head) -> tuple | None:
    """What members of one stacked model must share (None: this head cannot be stacked)."""
    if type(head) is not CNNHead:
        return None
    options = {k: v for k, v in head.constructor_kwargs.items() if k not in SHIFT_OPTIONS}
    return ("cnn", tuple(sorted((k, repr(v)) for k, v in options.items())))


def _shift_masks(head: CNNHead, block: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """(delayed channels (D,), advanced channels (D,), shift on the shortcut, shift on the branch input)."""
    delayed = torch.zeros(dim, dtype=torch.bool)
    advanced = torch.zeros(dim, dtype=torch.bool)
    placement = head.blocks[block].placement
    if placement == "none":
        return delayed, advanced, False, False
    shift = head.blocks[block].shift
    fold = dim // shift.n_div
    delayed[:fold] = True
    if shift.bidirectional:
        advanced[fold : 2 * fold] = True
    return delayed, advanced, placement in ("residual", "inplace"), placement in ("tsm-residual", "inplace")


class StackedCNN:
    """The forward pass of K `CNNHead` members with stacked parameters `params[name]` (K, …),
    named as in the members' state dicts."""

    def __init__(self, members: Sequence[CNNHead], device: torch.device):
        keys = {stack_key(head) for head in members}
        if None in keys or len(keys) != 1:
            raise UserInputError("these heads cannot be trained as one stacked model", "train them one by one")
        first = members[0]
        self.template = first
        self.dim = first.classifier.in_features
        self.kernel_size = first.blocks[0].dwconv.kernel_size[0]
        strides = {block.shift.stride for head in members for block in head.blocks if block.shift is not None}
        self.stride = strides.pop() if strides else 1
        if strides:
            raise UserInputError("members of one stacked model must share the shift stride")
        self.block_masks = []  # per block: (delayed (K,1,1,D), advanced (K,1,1,D), shortcut gate (K,1,1,1), branch gate)
        for index in range(len(first.blocks)):
            masks = [_shift_masks(head, index, self.dim) for head in members]
            delayed = torch.stack([m[0] for m in masks])[:, None, None, :].to(device)
            advanced = torch.stack([m[1] for m in masks])[:, None, None, :].to(device)
            shortcut = torch.tensor([m[2] for m in masks])[:, None, None, None].to(device)
            branch = torch.tensor([m[3] for m in masks])[:, None, None, None].to(device)
            self.block_masks.append((delayed, advanced, shortcut, branch))
        self.spec_augment = first.spec_augment
        self.size = len(members)

    # ---- the stages -------------------------------------------------------------------------

    def _layer_sums(self, params: dict, inputs: list[MemberBatch]) -> list[torch.Tensor]:
        """Each member's weighted layer sum of its own batch → [(B_k, T_k, D)]; members that share
        a batch object are summed in one matmul."""
        layer_sum = self.template.layer_sum
        logits = params.get("layer_sum.logits")
        sums: list[torch.Tensor | None] = [None] * len(inputs)
        by_batch: dict[int, list[int]] = {}
        for k, (x, _) in enumerate(inputs):
            by_batch.setdefault(id(x), []).append(k)
        for members in by_batch.values():
            selected = layer_sum.select(inputs[members[0]][0])  # (B, L', T, D)
            B, L, T, D = selected.shape
            if logits is None:
                for k in members:
                    sums[k] = selected[:, 0]
                continue
            weights = logits[members].softmax(dim=1).to(selected.dtype)  # (G, L')
            if len(members) == 1:
                summed = torch.bmm(weights.expand(B, -1)[:, None, :], selected.flatten(2)).view(1, B, T, D)
            else:
                summed = (weights @ selected.transpose(0, 1).reshape(L, -1)).view(len(members), B, T, D)
            for position, k in enumerate(members):
                sums[k] = summed[position]
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

    def _shift(self, x: torch.Tensor, delayed: torch.Tensor, advanced: torch.Tensor) -> torch.Tensor:
        """Temporal shift of x (K, B, T, D) with per-member channel masks (zero padding kept)."""
        T = x.shape[2]
        step = min(self.stride, T)
        later = F.pad(x[:, :, : T - step], (0, 0, step, 0))  # out[t] = x[t - step]
        earlier = F.pad(x[:, :, step:], (0, 0, 0, step))  # out[t] = x[t + step]
        return torch.where(delayed, later, torch.where(advanced, earlier, x))

    def _norm(self, x: torch.Tensor, params: dict, name: str) -> torch.Tensor:
        """LayerNorm over D with each member's affine: (K, B, T, D)."""
        weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]  # (K, D)
        eps = self.template.norm.eps
        return F.layer_norm(x, x.shape[-1:], eps=eps) * weight[:, None, None, :] + bias[:, None, None, :]

    def _linear(self, x: torch.Tensor, params: dict, name: str) -> torch.Tensor:
        """Member k's Linear on x[k]: (K, B, T, D_in) → (K, B, T, D_out) as one batched matmul."""
        K, B, T, D = x.shape
        weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]  # (K, D_out, D_in), (K, D_out)
        out = torch.baddbmm(bias[:, None, :], x.reshape(K, B * T, D), weight.transpose(1, 2))  # (K, B·T, D_out)
        return out.view(K, B, T, -1)

    def _branch(self, x: torch.Tensor, valid: torch.Tensor, params: dict, prefix: str) -> torch.Tensor:
        """F(x) of every member's block: depthwise conv → LayerNorm → MLP, padding zero: (K, B, T, D)."""
        K, B, T, D = x.shape
        x = x * valid
        grouped = x.permute(1, 0, 3, 2).reshape(B, K * D, T)  # (B, K·D, T)
        weight = params[f"{prefix}.dwconv.weight"].reshape(K * D, 1, -1)  # (K·D, 1, kernel)
        bias = params[f"{prefix}.dwconv.bias"].reshape(K * D)
        y = F.conv1d(grouped, weight, bias, padding=self.kernel_size // 2, groups=K * D)  # (B, K·D, T)
        y = y.view(B, K, D, T).permute(1, 0, 3, 2)  # (K, B, T, D)
        y = self._norm(y, params, f"{prefix}.norm")
        y = self._linear(F.gelu(self._linear(y, params, f"{prefix}.mlp.0")), params, f"{prefix}.mlp.2")
        return y * valid

    # ---- the whole head ---------------------------------------------------------------------

    def forward(self, params: dict, inputs: list[MemberBatch], training: bool,
                rng_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every member on its own batch → (K, B_max, C); rows past a member's B_k are padding."""
        sums = self._layer_sums(params, inputs)  # [(B_k, T_k, D)]
        rows = max(len(lengths) for _, lengths in inputs)
        frames = max(1, max(s.shape[1] for s in sums))
        x = sums[0].new_zeros(len(inputs), rows, frames, sums[0].shape[-1])  # (K, B, T, D)
        lengths = torch.zeros(len(inputs), rows, dtype=torch.long, device=x.device)  # (K, B); 0 marks a padded row
        for k, (summed, (_, member_lengths)) in enumerate(zip(sums, inputs)):
            x[k, : summed.shape[0], : summed.shape[1]] = summed
            lengths[k, : len(member_lengths)] = member_lengths
        valid = frame_mask(lengths.flatten(), frames).view(len(inputs), rows, frames)[..., None].to(x.dtype)
        x = x * valid  # (K, B, T, D)
        if training and self.spec_augment is not None:
            x = self._spec_augment(x, [l.to(x.device) for _, l in inputs], params, rng_states)
        for index, (delayed, advanced, shortcut_gate, branch_gate) in enumerate(self.block_masks):
            prefix = f"blocks.{index}"
            shortcut = branch_input = x
            if shortcut_gate.any() or branch_gate.any():  # some member shifts in this block
                shifted = self._shift(x, delayed, advanced) * valid
                shortcut = torch.where(shortcut_gate, shifted, x)
                branch_input = torch.where(branch_gate, shifted, x)
            x = shortcut + self._branch(branch_input, valid, params, prefix)  # (K, B, T, D)
        normed = self._norm(x, params, "norm") * valid
        pooled = normed.sum(dim=2) / lengths.clamp(min=1)[..., None].to(x.dtype)  # (K, B, D)
        weight, bias = params["classifier.weight"], params["classifier.bias"]  # (K, C, D), (K, C)
        return torch.baddbmm(bias[:, None, :], pooled, weight.transpose(1, 2))  # (K, B, C)


def rng_state(device: torch.device) -> torch.Tensor:
    """The state of the global generator that draws random numbers on `device`."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
