"""The transformer preset's attention is ShiftSER's (BERT relative_key_query, shared table, no
output projection); checked against the formula written out pair by pair."""

import math

import pytest
import torch

from ser.errors import UserInputError
from ser.heads import create_head
from ser.heads.stacked import stacked_model
from ser.heads.transformer import RelativeBiasAttention, RelativeKeyQueryAttention, by_distance


def pairwise_scores_attention(attention: RelativeKeyQueryAttention, x: torch.Tensor, length: int) -> torch.Tensor:
    """softmax_j((q_i·k_j + q_i·E[c(i−j)] + k_j·E[c(i−j)]) / √d) v_j for one utterance (T, D), one
    pair at a time, c clipping to the table; keys beyond `length` are left out."""
    T, D = x.shape
    H = attention.heads
    d = D // H
    q, k, v = attention.qkv(x).view(T, 3, H, d).unbind(1)  # (T, H, d) each
    table, M = attention.distance_embedding.weight, attention.max_distance
    out = torch.zeros(T, H, d)
    for h in range(H):
        for i in range(T):
            scores = torch.stack([
                (q[i, h] @ k[j, h] + q[i, h] @ table[max(-M, min(M, i - j)) + M]
                 + k[j, h] @ table[max(-M, min(M, i - j)) + M]) / math.sqrt(d)
                for j in range(length)
            ])
            out[i, h] = torch.softmax(scores, dim=0) @ v[:length, h]
    return out.reshape(T, D)


@pytest.mark.parametrize("max_distance", [373, 3])  # the reference's table, and one shorter than the input
def test_key_query_attention_matches_the_pairwise_formula(max_distance):
    torch.manual_seed(0)
    attention = RelativeKeyQueryAttention(16, 4, max_distance).eval()
    x = torch.randn(2, 9, 16)
    lengths = torch.tensor([9, 6])
    with torch.no_grad():
        batched = attention(x, lengths)
        for row, n in enumerate(lengths.tolist()):
            expected = pairwise_scores_attention(attention, x[row], n)
            torch.testing.assert_close(batched[row, :n], expected[:n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_distance", [373, 3])
def test_key_query_attention_gradients_match_the_pairwise_formula(max_distance):
    # the distance terms are strided views of the products (by_distance), not gathers: their
    # backward must still send each pair's gradient to its table row and its query and key
    torch.manual_seed(0)
    attention = RelativeKeyQueryAttention(16, 4, max_distance)
    x, n = torch.randn(1, 9, 16), 7
    weights = torch.randn(n, 16)  # a loss that weighs every output element differently
    batched = (attention(x, torch.tensor([n]))[0, :n] * weights).sum()
    expected = (pairwise_scores_attention(attention, x[0], n)[:n] * weights).sum()
    parameters = [attention.qkv.weight, attention.distance_embedding.weight]
    for got, want in zip(torch.autograd.grad(batched, parameters), torch.autograd.grad(expected, parameters)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_by_distance_reads_each_pair_at_its_distance():
    products = torch.randn(2, 5, 9)  # (…, T, 2T − 1): column m is distance m − (T − 1)
    viewed = by_distance(products)  # (…, T, T)
    for a in range(5):
        for b in range(5):
            assert torch.equal(viewed[:, a, b], products[:, a, b - a + 4])


def test_the_transformer_preset_is_shiftser_s_transformer():
    head = create_head("transformer", 768, 13, 4)
    attention = head.blocks[0].attention
    assert isinstance(attention, RelativeKeyQueryAttention) and not hasattr(attention, "proj")
    assert attention.distance_embedding.weight.shape == (2 * 374 - 1, 64) and attention.heads == 12
    assert head.constructor_kwargs["dropout"] == 0.0 and head.blocks[0].mlp[-1].p == 0.0
    configured = create_head("transformer", 768, 13, 4, dropout=0.1)
    assert configured.blocks[0].mlp[-1].p == 0.1 and configured.blocks[1].attention_dropout.p == 0.1
    assert create_head("shiftformer", 16, 2, 4).constructor_kwargs["dropout"] == 0.0


def test_longer_inputs_than_the_table_run_and_the_bias_attention_remains_an_option():
    torch.manual_seed(0)
    head = create_head("transformer", 16, 2, 4, max_relative_distance=4).eval()
    assert torch.isfinite(head(torch.randn(1, 2, 30, 16), torch.tensor([30]))).all()
    bias = create_head("transformer", 16, 2, 4, attention="relative-bias")
    assert isinstance(bias.blocks[0].attention, RelativeBiasAttention)
    with pytest.raises(UserInputError, match="attention"):
        create_head("transformer", 16, 2, 4, attention="absolute")


def test_stacked_members_with_a_clipped_table_compute_their_solo_logits():
    # inputs longer than the distance table (max_relative_distance 3 < T − 1): the stacked model's
    # per-member table rows are clipped as each solo head clips its own
    torch.manual_seed(0)
    heads = [create_head("transformer", 16, 2, 4, max_relative_distance=3, num_blocks=1).eval() for _ in range(2)]
    stacked = stacked_model(heads, torch.device("cpu"))
    params = {name: torch.stack([dict(h.named_parameters())[name].detach() for h in heads]) for name, _ in
              heads[0].named_parameters()}
    batches = [(torch.randn(3, 2, 11, 16), torch.tensor([11, 8, 5])), (torch.randn(2, 2, 9, 16), torch.tensor([9, 6]))]
    batches = [(x * (torch.arange(x.shape[2])[None, None, :, None] < n[:, None, None, None]), n) for x, n in batches]
    with torch.no_grad():
        together = stacked.forward(params, batches, training=False)  # (K, B_max, C)
        for k, (head, (x, lengths)) in enumerate(zip(heads, batches)):
            torch.testing.assert_close(together[k, : len(lengths)], head(x, lengths), atol=1e-5, rtol=1e-5)
