"""Temporal shift (ShiftSER / TSM): move a fraction of the channels one step along time, for free."""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn
from torch.nn import functional as F

from ser.errors import UserInputError
from ser.heads.masking import zero_padding

# Where a shift sits in a block F (see each head for the ones it accepts):
#   none          y = x + F(x)
#   residual      y = shift(x) + F(x)          (ShiftSER: the shift is on the shortcut)
#   tsm-residual  y = x + F(shift(x))          (video TSM)
#   inplace       xs = shift(x); y = xs + F(xs)
#   replacement   the shift replaces a Transformer block's self-attention, no residual around it
SHIFT_PLACEMENTS = ("none", "residual", "tsm-residual", "inplace", "replacement")


def parse_proportion(value: str | int | float) -> int:
    """A shift proportion → n_div: "1/8", "0.125", 0.125, "8" and 8 all give 8.

    The proportion is PER DIRECTION (as in the reference code): with bidirectional shift,
    1/8 delays 1/8 of the channels and advances another 1/8.
    """
    try:
        fraction = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise UserInputError(f"cannot read shift proportion {value!r}", "write it as 1/8, 0.125 or 8") from None
    n_div = 1 / fraction if 0 < fraction <= 1 else fraction
    if n_div.denominator != 1 or n_div < 1:
        raise UserInputError(
            f"shift proportion {value!r} is not 1/n for a whole n", "use 1/2, 1/4, 1/8, 1/16 (or n: 2, 4, 8, 16)"
        )
    return int(n_div)


def check_shift(dim: int, n_div: int, stride: int = 1, bidirectional: bool = False) -> None:
    """Raise UserInputError if this shift cannot act on `dim` channels."""
    if stride < 1:
        raise UserInputError(f"shift stride must be at least 1, got {stride}")
    if n_div < 1 or dim // n_div < 1:
        raise UserInputError(f"cannot shift 1/{n_div} of {dim} channels", f"choose n_div between 1 and {dim}")
    if bidirectional and 2 * (dim // n_div) > dim:
        raise UserInputError(
            f"bidirectional shift of 1/{n_div} per direction needs more than {dim} channels",
            "bidirectional shift needs n_div >= 2 (a proportion of at most 1/2 per direction)",
        )


def temporal_shift(
    x: torch.Tensor,
    n_div: int,
    stride: int = 1,
    bidirectional: bool = False,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Shift channel groups of x (B, T, D) along time with zero fill (never a roll).

    With fold = D // n_div: channels [0, fold) are delayed, out[t] = x[t - stride]; if
    `bidirectional`, channels [fold, 2*fold) are also advanced, out[t] = x[t + stride]. The rest
    is unchanged. n_div is PER DIRECTION: bidirectional moves 2/n_div of the channels.
    With `lengths`, each utterance is shifted within its true length: padded frames are zeroed
    before the shift (advanced channels never pull from padding) and are zero in the output.
    """
    B, T, D = x.shape
    check_shift(D, n_div, stride, bidirectional)
    if lengths is not None:
        x = zero_padding(x, lengths)
    fold = D // n_div
    step = min(stride, T)
    parts = [F.pad(x[:, : T - step, :fold], (0, 0, step, 0))]  # (B, T, fold): delayed
    if bidirectional:
        parts.append(F.pad(x[:, step:, fold : 2 * fold], (0, 0, 0, step)))  # (B, T, fold): advanced
    parts.append(x[:, :, len(parts) * fold :])  # (B, T, D - moved)
    out = torch.cat(parts, dim=-1)  # (B, T, D)
    return zero_padding(out, lengths) if lengths is not None else out


class TemporalShift(nn.Module):
    """`temporal_shift` with fixed settings, as a module (no parameters)."""

    def __init__(self, dim: int, n_div: int, stride: int = 1, bidirectional: bool = False):
        super().__init__()
        check_shift(dim, n_div, stride, bidirectional)
        self.n_div, self.stride, self.bidirectional = n_div, stride, bidirectional

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return temporal_shift(x, self.n_div, self.stride, self.bidirectional, lengths)

    def extra_repr(self) -> str:
        direction = "bidirectional" if self.bidirectional else "unidirectional"
        return f"1/{self.n_div} per direction, stride={self.stride}, {direction}"


def check_placement(placement: str, accepted: tuple[str, ...], head: str) -> None:
    """Raise UserInputError if `head` does not support this shift placement."""
    if placement not in accepted:
        raise UserInputError(
            f"the {head} head does not support shift placement {placement!r}",
            f"choose one of: {', '.join(accepted)}",
        )
