"""A stacked model's real frames: taking them out and putting them back, and both gradients."""

import torch

from ser.heads.stacked.real_frames import RealFrames


def valid_of(lengths: list[list[int]], T: int) -> torch.Tensor:
    """(K, B, T, 1): 1 on each member's real frames."""
    return (torch.arange(T)[None, None, :] < torch.tensor(lengths)[..., None])[..., None].double()


def frames_of(lengths: list[list[int]], T: int) -> RealFrames:
    return RealFrames(valid_of(lengths, T))


def test_take_then_put_keeps_real_frames_and_zeroes_padding():
    torch.manual_seed(0)
    frames = frames_of([[5, 2, 0], [3, 3, 1]], T=5)  # member 0 has 7 real frames, member 1 has 7 as well
    x = torch.randn(2, 3, 5, 4, dtype=torch.double)
    taken = frames.take(x)  # (K, N, D)
    assert taken.shape == (2, 7, 4)
    assert torch.equal(taken[0, :5], x[0, 0]) and torch.equal(taken[0, 5:], x[0, 1, :2])
    assert torch.equal(frames.put(taken), x * valid_of([[5, 2, 0], [3, 3, 1]], T=5))


def test_unused_slots_are_zero_and_get_no_gradient():
    frames = frames_of([[4, 4], [1, 0]], T=4)  # N = 8; member 1 fills one slot
    x = torch.randn(2, 2, 4, 3, dtype=torch.double, requires_grad=True)
    taken = frames.take(x)
    assert torch.count_nonzero(taken[1, 1:]) == 0
    (taken * 7.0).sum().backward()
    assert torch.count_nonzero(x.grad[1]) == 3  # only member 1's one real frame


def test_gradients_are_exact():
    torch.manual_seed(1)
    frames = frames_of([[6, 3, 1], [2, 6, 0], [0, 0, 0]], T=6)  # a member with no frames at all
    x = torch.randn(3, 3, 6, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(frames.take, (x,))
    f = torch.randn(3, frames.index.shape[1], 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(frames.put, (f,))


def test_a_per_frame_layer_on_real_frames_equals_it_on_the_padded_batch():
    torch.manual_seed(2)
    lengths = [[7, 3], [5, 6]]
    frames = frames_of(lengths, T=7)
    valid = valid_of(lengths, T=7)
    weight = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    x = torch.randn(2, 2, 7, 2, dtype=torch.double, requires_grad=True)
    packed = frames.put(torch.tanh(frames.take(x) @ weight))
    padded = torch.tanh(x @ weight) * valid
    assert torch.allclose(packed, padded)
    grads = torch.autograd.grad((packed ** 2).sum(), (x, weight))
    expected = torch.autograd.grad((padded ** 2).sum(), (x, weight))
    assert all(torch.allclose(a, b) for a, b in zip(grads, expected))
