"""temporal_shift against a plain NumPy loop, for every direction, proportion, stride and length."""

import numpy as np
import pytest
import torch

from ser.errors import UserInputError
from ser.heads import parse_proportion, temporal_shift


def numpy_shift(x: np.ndarray, n_div: int, stride: int, bidirectional: bool, lengths) -> np.ndarray:
    """Reference: each utterance cut to its length, shifted frame by frame, zero-padded back."""
    B, T, D = x.shape
    fold = D // n_div
    out = np.zeros_like(x)
    for b in range(B):
        n = lengths[b]
        for t in range(n):
            out[b, t] = x[b, t]
            out[b, t, :fold] = x[b, t - stride, :fold] if t - stride >= 0 else 0.0
            if bidirectional:
                out[b, t, fold : 2 * fold] = x[b, t + stride, fold : 2 * fold] if t + stride < n else 0.0
    return out


SHIFTS = [(bi, n_div) for bi in (False, True) for n_div in (1, 2, 3, 4, 8, 16) if not (bi and n_div < 2)]


@pytest.mark.parametrize("bidirectional, n_div", SHIFTS)
@pytest.mark.parametrize("stride", [1, 2, 5])
def test_matches_numpy_reference(bidirectional, n_div, stride):
    generator = torch.Generator().manual_seed(n_div * 10 + stride)
    x = torch.randn(3, 12, 16, generator=generator)
    lengths = torch.tensor([12, 7, 3])
    x = x * (torch.arange(12)[None, :, None] < lengths[:, None, None])  # padding is zero, as in a batch
    got = temporal_shift(x, n_div, stride=stride, bidirectional=bidirectional, lengths=lengths)
    expected = numpy_shift(x.numpy(), n_div, stride, bidirectional, lengths.tolist())
    np.testing.assert_array_equal(got.numpy(), expected)


def test_without_lengths_every_frame_is_real_and_nothing_wraps_around():
    x = torch.arange(1, 7, dtype=torch.float32)[None, :, None].repeat(1, 1, 4)  # (1, 6, 4), frame t holds t+1
    out = temporal_shift(x, n_div=4, stride=1, bidirectional=True)
    assert out[0, :, 0].tolist() == [0, 1, 2, 3, 4, 5]  # delayed, zero at the start
    assert out[0, :, 1].tolist() == [2, 3, 4, 5, 6, 0]  # advanced, zero at the end (no roll)
    assert out[0, :, 2].tolist() == [1, 2, 3, 4, 5, 6]


def test_padding_values_never_leak_into_real_frames():
    x = torch.randn(1, 6, 4)
    x[:, 4:] = 1000.0  # garbage in the padding
    out = temporal_shift(x, n_div=2, bidirectional=True, lengths=torch.tensor([4]))
    assert out.abs().max() < 1000.0
    assert torch.all(out[:, 4:] == 0)
    assert torch.all(out[0, 3, 2:] == 0)  # the advanced channels of the last real frame are zero-filled


def test_stride_longer_than_the_sequence_zeroes_the_moved_channels():
    x = torch.ones(2, 3, 8)
    out = temporal_shift(x, n_div=4, stride=5, bidirectional=True)
    assert torch.all(out[..., :4] == 0) and torch.all(out[..., 4:] == 1)


def test_gradient_flows_through_the_shift():
    x = torch.randn(2, 5, 8, requires_grad=True)
    temporal_shift(x, n_div=4, bidirectional=True).sum().backward()
    assert x.grad[:, 0, 2:4].eq(0).all()  # the first frame's advanced channels feed nothing
    assert x.grad[:, 1:, 2:4].eq(1).all()


@pytest.mark.parametrize("text, n_div", [("1/8", 8), ("8", 8), ("0.125", 8), (0.25, 4), (16, 16), ("1/2", 2), ("1", 1)])
def test_parse_proportion(text, n_div):
    assert parse_proportion(text) == n_div


@pytest.mark.parametrize("text", ["3/8", "0.3", "abc", "0", "-1/4", "1/0"])
def test_parse_proportion_rejects_what_is_not_one_over_n(text):
    with pytest.raises(UserInputError):
        parse_proportion(text)


def test_impossible_shifts_raise_user_errors():
    x = torch.zeros(1, 4, 8)
    with pytest.raises(UserInputError, match="bidirectional"):
        temporal_shift(x, n_div=1, bidirectional=True)
    with pytest.raises(UserInputError):
        temporal_shift(x, n_div=16)
    with pytest.raises(UserInputError, match="stride"):
        temporal_shift(x, n_div=4, stride=0)
