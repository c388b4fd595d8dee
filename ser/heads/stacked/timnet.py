"""K `TIMNetHead` members (seeds, folds of one TIM-Net configuration) as one model.

The solo head runs on its batch's real frames packed sequence after sequence, (C, N). Stacked,
each member packs its own batch the same way and the members' packed frames are padded to the
most real frames of any member, (K, C, N); the padded slots lie after every real frame, so a
causal tap never reaches back into them. Then:
- the 1×1 input convs and every causal dilated conv of all members and both directions are one
  batched product, (2K, k·C, C) × (2K, C, N), the forward groups first;
- BatchNorm statistics are each member's own, over its real slots only (a masked mean and
  variance per group and channel); the running statistics live in one stacked tensor whose
  slices ARE the members' BatchNorm buffers, so a member's state dict is always current;
- channel dropout draws each member's masks from its own RNG state, in the order the solo head
  draws them (after its SpecAugment), so dropout needs no special case.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ser.heads.masking import frame_mask
from ser.heads.stacked.base import MemberBatch, StackedHeads
from ser.heads.stacked.real_frames import RealFrames
from ser.heads.timnet import TIMNetHead

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class MemberPackedFrames:
    """Each member's real frames packed sequence after sequence (as the solo head's `PackedFrames`),
    padded to N slots, the most real frames of any member."""

    def __init__(self, lengths: torch.Tensor, max_len: int, dtype: torch.dtype):
        K, B = lengths.shape  # lengths (K, B); 0 marks a padded row
        valid = frame_mask(lengths.flatten(), max_len).view(K, B, max_len)[..., None]
        self.positions = RealFrames(valid)  # (K, N) slots in each member's flattened (B·T) batch
        index, N = self.positions.index, self.positions.index.shape[1]
        self.real = self.positions.slots[..., 0]  # (K, N) bool: the slot holds a real frame
        self.count = self.real.sum(dim=1)  # (K,)
        self.sequence = torch.where(self.real, index // max_len, 0)  # (K, N)
        self.time = torch.where(self.real, index % max_len, 0)  # (K, N)
        starts = lengths.cumsum(1) - lengths  # (K, B) slot of each sequence's first frame
        mirrored = starts.gather(1, self.sequence) + lengths.gather(1, self.sequence) - 1 - self.time
        self.reversed_order = torch.where(self.real, mirrored, torch.arange(N, device=lengths.device))  # (K, N)
        share = self.real.to(dtype) / lengths.gather(1, self.sequence).clamp(min=1).to(dtype)  # (K, N)
        self.pooling = torch.zeros(K, N, B, dtype=dtype, device=lengths.device)
        self.pooling.scatter_(2, self.sequence[..., None], share[..., None])  # (K, N, B): 1/length on its frames

    def shift(self, z: torch.Tensor, lag: int) -> torch.Tensor:
        """z (2K, C, N), forward groups then backward, delayed by `lag` steps within each sequence."""
        if lag == 0:
            return z
        started = (self.time >= lag).to(z.dtype).repeat(2, 1)[:, None, :]  # (2K, 1, N)
        return F.pad(z, (lag, 0))[..., : z.shape[-1]] * started


class StackedTIMNet(StackedHeads):
    """K `TIMNetHead` members of one configuration (any seed and fold, dropout included)."""

    head_class = TIMNetHead

    @staticmethod
    def floats_per_frame(head: TIMNetHead, dim: int, frames: int) -> int:
        kw = head.constructor_kwargs
        # per level and direction, twice: the taps, conv output, norm, ReLU, dropout; then the gate
        return kw["num_blocks"] * 2 * (2 * (kw["kernel_size"] + 5) + 2) * kw["channels"] + 2 * dim + 64

    def __init__(self, members: Sequence[TIMNetHead], device: torch.device):
        super().__init__(members, device)
        first = members[0]
        self.channels = first.forward_input.out_channels
        self.levels = len(first.forward_blocks)
        self.kernel_size = first.forward_blocks[0].convs[0].kernel_size[0]
        self.dropout = first.forward_blocks[0].dropout.p
        norm = first.forward_blocks[0].norms[0]
        self.eps, self.momentum = norm.eps, norm.momentum
        self.running, self.shared_norms = self._share_running_statistics(members)

    def _share_running_statistics(self, members: Sequence[TIMNetHead]) -> tuple[dict[str, torch.Tensor], list]:
        """The members' BatchNorm buffers as one tensor per kind, (levels, 2 sub-blocks, 2K, C) (no C
        for the step count), group g = direction·K + k; each member's buffers become views of it.
        Also returns those norms in the stacked tensor's (level, sub, g) order."""
        norms = [[[norm for direction in range(2) for norm in
                   (self._norms(head, level, sub)[direction] for head in members)]
                  for sub in range(2)] for level in range(self.levels)]  # [level][sub][g]
        running = {name: torch.stack([torch.stack([torch.stack([getattr(norm, name) for norm in groups])
                                                   for groups in per_sub]) for per_sub in norms]).clone()
                   for name in _BUFFERS}
        shared = [norm for per_sub in norms for groups in per_sub for norm in groups]
        for i, norm in enumerate(shared):
            for name in _BUFFERS:
                setattr(norm, name, running[name].flatten(0, 2)[i])  # a view: the stacked tensor is the buffer
        return running, shared

    def release(self) -> None:
        """Each member's BatchNorm buffers become its own tensors again (a saved view would carry
        the whole stacked tensor)."""
        for norm in self.shared_norms:
            for name in _BUFFERS:
                setattr(norm, name, getattr(norm, name).clone())

    @staticmethod
    def _norms(head: TIMNetHead, level: int, sub: int) -> list:
        """The forward and backward BatchNorm of one sub-block of one level."""
        return [blocks[level].norms[sub] for blocks in (head.forward_blocks, head.backward_blocks)]

    # ---- the stages -------------------------------------------------------------------------

    def _pair(self, params: dict, name: str) -> torch.Tensor:
        """A parameter of both directions, forward members then backward: (2K, …)."""
        return torch.cat([params[f"forward_{name}"], params[f"backward_{name}"]])

    def _causal_conv(self, y: torch.Tensor, params: dict, level: int, sub: int,
                     frames: MemberPackedFrames) -> torch.Tensor:
        """Every group's causal dilated conv on its packed frames: y (2K, C, N) → (2K, C, N)."""
        k, C = self.kernel_size, self.channels
        weight = self._pair(params, f"blocks.{level}.convs.{sub}.weight")  # (2K, C_out, C_in, k)
        taps = torch.bmm(weight.permute(0, 3, 1, 2).reshape(-1, k * C, C), y).split(C, dim=1)  # k × (2K, C, N)
        out = self._pair(params, f"blocks.{level}.convs.{sub}.bias")[:, :, None] + taps[-1]  # the last tap: the frame itself
        for i in range(k - 1):  # tap i looks (k-1-i)·dilation steps back
            out = out + frames.shift(taps[i], (k - 1 - i) * 2**level)
        return out

    def _batch_norm(self, y: torch.Tensor, params: dict, level: int, sub: int, frames: MemberPackedFrames,
                    training: bool) -> torch.Tensor:
        """Each group's BatchNorm over its member's real slots, y (2K, C, N) (float32 statistics).
        In training, members with at least two real frames use and update their batch statistics;
        the others (and every member in eval mode) use their running statistics."""
        real = frames.real.repeat(2, 1)[:, None, :].to(torch.float32)  # (2K, 1, N)
        count = frames.count.repeat(2)[:, None].to(torch.float32)  # (2K, 1)
        y32 = y.float()
        mean, var = self.running["running_mean"][level, sub], self.running["running_var"][level, sub]  # (2K, C)
        if training:
            batch = count >= 2  # (2K, 1)
            batch_mean = (y32 * real).sum(dim=2) / count.clamp(min=1)  # (2K, C)
            centred = (y32 - batch_mean[:, :, None]) * real
            batch_var = (centred * centred).sum(dim=2) / count.clamp(min=1)  # biased, as the norm uses it
            with torch.no_grad():
                unbiased = batch_var * count / (count - 1).clamp(min=1)
                for name, value in (("running_mean", batch_mean), ("running_var", unbiased)):
                    stored = self.running[name][level, sub]
                    stored.copy_(torch.where(batch, torch.lerp(stored, value, self.momentum), stored))
                self.running["num_batches_tracked"][level, sub] += batch[:, 0].long()
            mean = torch.where(batch, batch_mean, mean)
            var = torch.where(batch, batch_var, var)
        scale = self._pair(params, f"blocks.{level}.norms.{sub}.weight") * torch.rsqrt(var + self.eps)  # (2K, C)
        shift = self._pair(params, f"blocks.{level}.norms.{sub}.bias") - mean * scale
        return torch.addcmul(shift[:, :, None], y32, scale[:, :, None]).to(y.dtype)

    def _channel_keeps(self, inputs: list[MemberBatch], rng_states: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """Each member's channel-dropout scale factors, drawn in the solo head's order (per level: the
        forward sub-blocks 0, 1, then the backward ones; each a (B, C, 1) draw) → (levels, 2 sub-blocks, 2K, C, B)."""
        K, C = len(inputs), self.channels
        draws = self._dropout_scales(inputs, rng_states, self.dropout, lambda b, t: [(b, C, 1)] * (self.levels * 4), device)
        B = draws[0].shape[1]
        keeps = torch.stack(draws).view(self.levels, 2, 2, K, B, C)  # [level, direction, sub, k, b, c]
        return keeps.permute(0, 2, 1, 3, 5, 4).reshape(self.levels, 2, 2 * K, C, B)

    def _real_frames(self, params: dict, inputs: list[MemberBatch], training: bool,
                     rng_states: list[torch.Tensor] | None) -> tuple[MemberPackedFrames, torch.Tensor]:
        """Where each member's real frames lie, and its layer sum (SpecAugment applied) on them → (K, N, D).
        Without SpecAugment the real frames are taken from each member's own layer sum: the members'
        batches are never padded into one (K, B, T, D) tensor, which at D=768 cost more than the blocks."""
        rows = max(len(lengths) for _, lengths in inputs)
        if training and self.spec_augment is not None:
            x, lengths, _ = self._padded(params, inputs, training, rng_states)  # (K, B, T, D), padding zero
            frames = MemberPackedFrames(lengths, x.shape[2], x.dtype)
            return frames, frames.positions.take(x)
        sums = self._layer_sums(params, inputs)  # [(B_k, T_k, D)]
        lengths = torch.stack([F.pad(member_lengths.to(sums[0].device), (0, rows - len(member_lengths)))
                               for _, member_lengths in inputs])  # (K, B)
        frames = MemberPackedFrames(lengths, max(1, max(summed.shape[1] for summed in sums)), sums[0].dtype)
        N, D = frames.real.shape[1], sums[0].shape[-1]
        real = []
        for k, summed in enumerate(sums):
            count = int(frames.count[k])
            own = frames.sequence[k, :count] * summed.shape[1] + frames.time[k, :count]  # (N_k,) in its own (B_k·T_k)
            real.append(F.pad(summed.reshape(-1, D).index_select(0, own), (0, 0, 0, N - count)))  # (N, D)
        return frames, torch.stack(real)

    # ---- the whole head ---------------------------------------------------------------------

    def forward(self, params: dict, inputs: list[MemberBatch], training: bool,
                rng_states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of every member on its own batch → (K, B_max, classes); rows past a member's B_k are padding."""
        frames, real = self._real_frames(params, inputs, training, rng_states)  # real (K, N, D)
        K = len(inputs)
        C = self.channels
        weight = torch.cat([params["forward_input.weight"], params["backward_input.weight"]], dim=1)[..., 0]  # (K, 2C, D)
        bias = torch.cat([params["forward_input.bias"], params["backward_input.bias"]], dim=1)  # (K, 2C)
        projected = torch.baddbmm(bias[:, :, None], weight, real.transpose(1, 2))  # (K, 2C, N)
        behind = projected[:, C:].gather(2, frames.reversed_order[:, None, :].expand(-1, C, -1))  # reversed in place
        both = torch.cat([projected[:, :C], behind])  # (2K, C, N): forward groups, then backward
        keeps = None
        if training and self.dropout > 0:
            keeps = self._channel_keeps(inputs, rng_states, real.device)  # (levels, 2, 2K, C, B)
            slots = frames.sequence.repeat(2, 1)[:, None, :].expand(-1, C, -1)  # (2K, C, N): each slot's sequence
        summed = []
        for level in range(self.levels):
            y = both
            for sub in range(2):
                y = F.relu(self._batch_norm(self._causal_conv(y, params, level, sub, frames), params, level, sub,
                                            frames, training))
                if keeps is not None:
                    y = y * keeps[level, sub].gather(2, slots)
            both = both * torch.sigmoid(y)
            summed.append(both[:K] + both[K:])  # (K, C, N): a sequence's frames sum to the same in either order
        weighted = torch.einsum("jkcn,kj->kcn", torch.stack(summed), params["fusion"])  # (K, C, N)
        pooled = torch.bmm(weighted, frames.pooling).transpose(1, 2)  # (K, B, C) means over each sequence
        return self._linear(pooled, params["classifier.weight"], params["classifier.bias"])  # (K, B, classes)
