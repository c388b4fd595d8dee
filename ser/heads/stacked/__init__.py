"""K heads of one family as ONE computation: batched matmuls, grouped kernels, per-member masks.

Every head family of the ablation grids stacks: `StackedCNN` (cnn/shiftcnn), `StackedTransformer`
(transformer/shiftformer), `StackedLSTM` (lstm/shiftlstm), `StackedTIMNet`, `StackedCTARNN` and
`StackedLinear` (the SUPERB linear probe). Each holds every member's parameters stacked on a
leading axis K and runs all of them in one forward pass; `stacked_model` picks the family. What
they share is in `base.py`: each member's layer sum of its own batch, the batches padded to one
(K, B, T, D) tensor (every head is padding-invariant, so a member computes what its solo head
computes), SpecAugment and dropout drawn from each member's own RNG state, per-frame layers on
real frames. `recurrence.py` runs the members' LSTMs as one grouped recurrence.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ser.errors import UserInputError
from ser.heads.stacked.base import MemberBatch, StackedHeads, rng_state, set_rng_state
from ser.heads.stacked.cnn import StackedCNN
from ser.heads.stacked.ctarnn import StackedCTARNN
from ser.heads.stacked.linear import StackedLinear
from ser.heads.stacked.lstm import StackedLSTM
from ser.heads.stacked.timnet import StackedTIMNet
from ser.heads.stacked.transformer import StackedTransformer

__all__ = ["MemberBatch", "STACKED", "activation_floats_per_frame", "rng_state", "set_rng_state", "stack_key",
           "stacked_model"]

STACKED: dict[str, type[StackedHeads]] = {"cnn": StackedCNN, "transformer": StackedTransformer, "linear": StackedLinear,
                                          "timnet": StackedTIMNet, "lstm": StackedLSTM, "ctarnn": StackedCTARNN}


def stack_key(head) -> tuple | None:
    """What members of one stacked model must share (None: this head cannot be stacked)."""
    for family, stacked in STACKED.items():
        if type(head) is stacked.head_class:
            if not stacked.stacks(head):
                return None
            options = {k: v for k, v in head.constructor_kwargs.items() if k not in stacked.member_options}
            return (family, tuple(sorted((k, repr(v)) for k, v in options.items())), stacked.graph(head))
    return None


def stacked_model(members: Sequence, device: torch.device) -> "StackedHeads":
    """The stacked forward pass of `members`, heads of one family with one graph."""
    keys = {stack_key(head) for head in members}
    if None in keys or len(keys) != 1:
        raise UserInputError("these heads cannot be trained as one stacked model", "train them one by one")
    return STACKED[keys.pop()[0]](members, device)


def activation_floats_per_frame(head, num_layers: int, dim: int, frames: int) -> int:
    """Floats one member of a stacked model keeps per frame of its batch in a training step, its
    batches `frames` long: its input (kept for the layer-sum gradient) and the activations
    autograd keeps (and the layer sum that an input projection keeps)."""
    projected = dim if getattr(head, "input_projection", None) is not None else 0
    return num_layers * dim + projected + STACKED[stack_key(head)[0]].floats_per_frame(head, dim, frames)
