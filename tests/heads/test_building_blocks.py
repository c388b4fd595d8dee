"""Weighted layer sum, masks and pooling, and in-head SpecAugment."""

import pytest
import torch

from ser.errors import UserInputError
from ser.heads import SpecAugment, WeightedLayerSum
from ser.heads.cnn import depthwise_conv_over_time
from ser.heads.masking import AttentivePooling, layer_means, masked_mean, reverse_within_lengths
from ser.heads.spec_augment import span_masks
from ser.heads.stacked.recurrence import reverse_within_lengths as reverse_within_lengths_stacked


def test_layer_sum_starts_uniform_and_learns():
    layer_sum = WeightedLayerSum(4)
    x = torch.randn(2, 4, 5, 3)
    torch.testing.assert_close(layer_sum(x), x.mean(dim=1))
    assert torch.allclose(layer_sum.weights(), torch.full((4,), 0.25))
    layer_sum(x)[..., 0].sum().backward()
    assert layer_sum.logits.grad.abs().sum() > 0


def test_layer_sum_subset_and_negative_indices():
    layer_sum = WeightedLayerSum(5, layers=[1, -1])
    x = torch.randn(2, 5, 4, 3)
    torch.testing.assert_close(layer_sum(x), (x[:, 1] + x[:, 4]) / 2)
    assert layer_sum.weights().tolist() == [0.0, 0.5, 0.0, 0.0, 0.5]


def test_single_layer_passes_through_without_weights():
    layer_sum = WeightedLayerSum(5, layers=2)
    x = torch.randn(2, 5, 4, 3)
    assert torch.equal(layer_sum(x), x[:, 2])
    assert list(layer_sum.parameters()) == []
    assert layer_sum.weights().tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_layer_sum_layer_norm_normalises_each_layer():
    layer_sum = WeightedLayerSum(2, layer_norm=True)
    x = torch.randn(1, 2, 3, 8) * torch.tensor([1.0, 100.0])[None, :, None, None]
    selected = layer_sum.select(x)
    torch.testing.assert_close(selected.std(dim=-1, unbiased=False), torch.ones(1, 2, 3), atol=1e-3, rtol=0)


@pytest.mark.parametrize("layers", [[7], [0, 0], []])
def test_bad_layer_choices_are_user_errors(layers):
    with pytest.raises(UserInputError):
        WeightedLayerSum(5, layers=layers)


def test_masked_mean_and_attentive_pooling_ignore_padding():
    x = torch.randn(2, 6, 3)
    x[1, 4:] = 50.0
    lengths = torch.tensor([6, 4])
    torch.testing.assert_close(masked_mean(x, lengths)[1], x[1, :4].mean(dim=0))
    pool = AttentivePooling(3)
    torch.testing.assert_close(pool(x, lengths)[1], pool(x[1:, :4], lengths[1:])[0])


def test_layer_means_average_each_layer_over_its_real_frames():
    x = torch.randn(2, 3, 6, 4)  # (B, L, T, D)
    x[1, :, 4:] = 50.0  # padding that must not count
    lengths = torch.tensor([6, 4])
    means = layer_means(x, lengths)  # (B, L, D)
    assert means.shape == (2, 3, 4)
    for layer in range(3):
        torch.testing.assert_close(means[:, layer], masked_mean(x[:, layer], lengths))


def test_reverse_within_lengths_keeps_padding_at_the_end():
    x = torch.arange(1, 6, dtype=torch.float32)[None, :, None].repeat(2, 1, 1)  # (2, 5, 1)
    out = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [5, 4, 3, 2, 1]
    assert out[1, :3, 0].tolist() == [3, 2, 1]


def test_reversal_gradients_are_the_reversed_gradients_solo_and_stacked():
    torch.manual_seed(0)
    lengths = torch.tensor([7, 4, 1, 6])
    x = torch.randn(4, 7, 3, requires_grad=True)  # (B, T, D)
    grad = torch.randn(4, 7, 3)
    flipped = [torch.cat([row[:n].flip(0), row[n:]]) for row, n in zip(x, lengths.tolist())]
    expected = torch.autograd.grad(torch.stack(flipped), x, grad)[0]
    out = reverse_within_lengths(x, lengths)
    assert torch.equal(out, torch.stack(flipped))
    assert torch.equal(torch.autograd.grad(out, x, grad)[0], expected)
    double = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: reverse_within_lengths(v, torch.tensor([5, 2])), (double,))

    members = torch.randn(2, 4, 7, 3, requires_grad=True)  # (K, B, T, D)
    member_lengths = torch.stack([lengths, lengths.flip(0)])  # (K, B)
    stacked = reverse_within_lengths_stacked(members.transpose(1, 2), member_lengths).transpose(1, 2)  # (K, B, T, D)
    for k in range(2):
        assert torch.equal(stacked[k], reverse_within_lengths(members[k], member_lengths[k]))
    upstream = torch.randn_like(stacked)
    stacked_grad = torch.autograd.grad(stacked, members, upstream)[0]
    for k in range(2):  # reversal is its own inverse: the gradient is the reversed upstream gradient
        assert torch.equal(stacked_grad[k], reverse_within_lengths(upstream[k], member_lengths[k]))


def test_span_masks_stay_inside_lengths_and_meet_the_minimum():
    torch.manual_seed(0)
    lengths = torch.tensor([100, 40, 10])
    masks = span_masks(lengths, 120, prob=0.08, span=15, min_masks=2)
    assert masks.shape == (3, 120)
    for row, n in zip(masks, lengths.tolist()):
        assert not row[n:].any()
        assert row[:n].sum() >= min(15, n // 2)  # at least one full span


def test_spec_augment_is_seeded_stays_in_real_frames_and_is_off_in_eval():
    augment = SpecAugment(dim=128)
    x = torch.randn(2, 60, 128)
    lengths = torch.tensor([60, 30])
    x[1, 30:] = 0.0
    torch.manual_seed(3)
    first = augment(x, lengths)
    torch.manual_seed(3)
    assert torch.equal(first, augment(x, lengths))
    assert not torch.equal(first, x)
    assert torch.all(first[1, 30:] == 0)
    augment.eval()
    assert torch.equal(augment(x, lengths), x)


def test_time_masks_use_the_learned_vector():
    augment = SpecAugment(dim=16, channel_prob=0.0, min_channel_masks=0, time_clip_frames=0)  # inside the lengths
    x = torch.randn(2, 60, 16)
    lengths = torch.tensor([60, 30])
    torch.manual_seed(0)
    out = augment(x, lengths)
    masked = (out == augment.mask_embedding).all(dim=-1)  # (B, T)
    assert masked.sum(dim=1).ge(15).all()  # >= 2 masks of 15 frames (they may overlap)
    assert not masked[1, 30:].any()
    torch.testing.assert_close(out[~masked], x[~masked])
    out.sum().backward()
    assert augment.mask_embedding.grad.abs().sum() > 0


def test_channel_masks_set_whole_channels_to_zero():
    augment = SpecAugment(dim=128, time_prob=0.0, min_time_masks=0)
    x = torch.randn(3, 20, 128)
    torch.manual_seed(1)
    out = augment(x, torch.tensor([20, 20, 20]))
    zeroed = (out == 0).all(dim=1)  # (B, D)
    assert zeroed.sum(dim=1).ge(64).all()  # >= 1 mask of 64 channels
    torch.testing.assert_close(out[~zeroed[:, None, :].expand_as(out)], x[~zeroed[:, None, :].expand_as(x)])


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_over_lengths_computes_what_packed_sequences_compute(layers):
    """The dense length-aware BiLSTM against torch's packed sequences: outputs and every gradient."""
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from ser.heads.lstm import run_lstm_over_lengths

    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, num_layers=layers, batch_first=True, bidirectional=True)
    lengths = torch.tensor([9, 4, 7, 1])
    x = torch.randn(4, 9, 6) * (torch.arange(9)[None, :, None] < lengths[:, None, None])
    packed_in, dense_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, _ = lstm(pack_padded_sequence(packed_in, lengths, batch_first=True, enforce_sorted=False))
    expected = pad_packed_sequence(out, batch_first=True, total_length=9)[0]  # (B, T, 2H)
    expected.square().sum().backward()
    expected_grads = [p.grad.clone() for p in lstm.parameters()]
    lstm.zero_grad()
    got = run_lstm_over_lengths(lstm, dense_in, lengths)
    got.square().sum().backward()
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dense_in.grad, packed_in.grad, atol=1e-6, rtol=1e-5)
    for mine, theirs in zip((p.grad for p in lstm.parameters()), expected_grads):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    assert got[1, 4:].abs().max() == 0  # padding stays zero


@pytest.mark.parametrize("kernel_size", [7, 3])
def test_depthwise_conv_over_time_is_conv1d_on_the_transposed_frames(kernel_size):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(12, 12, kernel_size, padding=kernel_size // 2, groups=12)
    x = torch.randn(3, 20, 12, requires_grad=True)  # (B, T, C)
    weights = torch.randn(3, 20, 12)  # a loss that weighs every output differently
    got = depthwise_conv_over_time(x, conv.weight, conv.bias)
    want = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    parameters = (x, conv.weight, conv.bias)
    for g, w in zip(torch.autograd.grad((got * weights).sum(), parameters),
                    torch.autograd.grad((want * weights).sum(), parameters)):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    shuffled = torch.randn(20, 3, 12).transpose(0, 1)  # a non-contiguous (B, T, C) input
    torch.testing.assert_close(depthwise_conv_over_time(shuffled, conv.weight, conv.bias),
                               conv(shuffled.transpose(1, 2)).transpose(1, 2), atol=1e-5, rtol=1e-5)
