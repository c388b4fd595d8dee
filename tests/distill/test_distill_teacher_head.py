"""The multimodal teacher head: shapes, padding invariance on both inputs, rebuild from kwargs."""

import torch

from ser.heads.multimodal import MultimodalHead


def make_head(**kw):
    torch.manual_seed(0)
    return MultimodalHead(8, 3, 3, text_dim=6, text_layers=2, hidden=16, **kw)


def test_forward_shape_gradients_and_layer_weights():
    head = make_head()
    x, text = torch.randn(4, 3, 20, 8), torch.randn(4, 2, 7, 6)
    out = head(x, torch.tensor([20, 11, 5, 20]), text, torch.tensor([7, 3, 7, 2]))
    assert out.shape == (4, 3)
    out.sum().backward()
    assert head.audio.layer_sum.logits.grad is not None and head.text.layer_sum.logits.grad is not None
    assert torch.allclose(head.layer_weights(), torch.full((3,), 1 / 3))
    assert torch.allclose(head.text_layer_weights(), torch.full((2,), 1 / 2))


def test_padding_of_audio_or_text_does_not_change_outputs():
    head = make_head().eval()
    x, text = torch.randn(1, 3, 9, 8), torch.randn(1, 2, 4, 6)
    alone = head(x, torch.tensor([9]), text, torch.tensor([4]))
    padded_x = torch.cat([x, torch.randn(1, 3, 6, 8)], dim=2)  # garbage after the true length
    padded_text = torch.cat([text, torch.randn(1, 2, 5, 6)], dim=2)
    assert torch.allclose(alone, head(padded_x, torch.tensor([9]), padded_text, torch.tensor([4])), atol=1e-6)


def test_text_changes_the_prediction_and_dropout_makes_mc_samples_differ():
    head = make_head(dropout=0.3)
    x, lengths = torch.randn(2, 3, 9, 8), torch.tensor([9, 9])
    text_a, text_b, text_lengths = torch.randn(2, 2, 4, 6), torch.randn(2, 2, 4, 6), torch.tensor([4, 4])
    head.eval()
    assert not torch.allclose(head(x, lengths, text_a, text_lengths), head(x, lengths, text_b, text_lengths))
    assert torch.equal(head(x, lengths, text_a, text_lengths), head(x, lengths, text_a, text_lengths))
    head.train()
    assert not torch.allclose(head(x, lengths, text_a, text_lengths), head(x, lengths, text_a, text_lengths))
