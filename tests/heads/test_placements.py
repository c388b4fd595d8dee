"""Each shift placement computes exactly the dataflow it names."""

import pytest
import torch

from ser.errors import UserInputError
from ser.heads import create_head, temporal_shift

LENGTHS = torch.tensor([9, 6])


def padded_input(dim=16):
    torch.manual_seed(0)
    h = torch.randn(2, 9, dim)
    return h * (torch.arange(9)[None, :, None] < LENGTHS[:, None, None])


def shift(x, n_div, bidirectional=False):
    return temporal_shift(x, n_div, bidirectional=bidirectional, lengths=LENGTHS)


@pytest.mark.parametrize(
    "placement, formula",
    [
        ("none", lambda x, F, s: x + F(x)),
        ("residual", lambda x, F, s: s(x) + F(x)),
        ("tsm-residual", lambda x, F, s: x + F(s(x))),
        ("inplace", lambda x, F, s: s(x) + F(s(x))),
    ],
)
def test_cnn_block_placements(placement, formula):
    head = create_head("shiftcnn", 16, 2, 3, shift_placement=placement, n_div=4, bidirectional=True).eval()
    block = head.blocks[1]
    x = padded_input()
    expected = formula(x, lambda h: block.branch(h, LENGTHS), lambda h: shift(h, 4, True))
    torch.testing.assert_close(block(x, LENGTHS), expected)


def test_shiftcnn_shifts_only_its_second_block():
    head = create_head("shiftcnn", 16, 2, 3)
    assert [block.placement for block in head.blocks] == ["none", "residual"]
    assert head.blocks[0].shift is None and head.blocks[1].shift.n_div == 16


@pytest.mark.parametrize(
    "placement, formula",
    [
        ("none", lambda b, x, s: b.attention_norm(x + b.attend(x, LENGTHS))),
        ("replacement", lambda b, x, s: s(x)),
        ("residual", lambda b, x, s: b.attention_norm(s(x) + b.attend(x, LENGTHS))),
        ("tsm-residual", lambda b, x, s: b.attention_norm(x + b.attend(s(x), LENGTHS))),
        ("inplace", lambda b, x, s: b.attention_norm(s(x) + b.attend(s(x), LENGTHS))),
    ],
)
def test_transformer_block_placements(placement, formula):
    head = create_head("transformer", 16, 2, 3, shift_placement=placement, n_div=8, bidirectional=True).eval()
    block = head.blocks[0]
    x = padded_input()
    mixed = formula(block, x, lambda h: shift(h, 8, True))
    expected = block.mlp_norm(mixed + block.mlp(mixed)) * (torch.arange(9)[None, :, None] < LENGTHS[:, None, None])
    torch.testing.assert_close(block(x, LENGTHS), expected)


def test_shiftformer_has_no_attention_and_shifts_both_ways():
    head = create_head("shiftformer", 16, 2, 3)
    for block in head.blocks:
        assert block.placement == "replacement" and block.shift.bidirectional and block.shift.n_div == 4
        assert not hasattr(block, "attention") and not hasattr(block, "attention_norm")


def test_shiftlstm_feeds_the_lstm_a_shifted_input():
    head = create_head("shiftlstm", 16, 1, 3, n_div=2, spec_augment=False).eval()
    plain = create_head("lstm", 16, 1, 3, spec_augment=False).eval()
    plain.load_state_dict(head.state_dict())
    x = padded_input()[:, None]  # (B, L=1, T, D)
    torch.testing.assert_close(head(x, LENGTHS), plain(shift(x[:, 0], 2)[:, None], LENGTHS))
    assert not torch.allclose(head(x, LENGTHS), plain(x, LENGTHS))


@pytest.mark.parametrize("name, placement", [("cnn", "replacement"), ("lstm", "residual"), ("lstm", "tsm-residual"),
                                             ("shiftformer", "sideways")])
def test_unsupported_placements_are_user_errors(name, placement):
    with pytest.raises(UserInputError, match="placement"):
        create_head(name, 16, 2, 3, shift_placement=placement)
