"""SpecAugment masks the share of an utterance's real frames that ShiftSER's reference masks
(reference.md §2: masks drawn on the 7.5-s padded clip), and never its padding."""

import pytest
import torch

from ser.heads import SpecAugment

# seconds → (frames at 50 frames/s, the reference's time-masked share of real frames in %)
REFERENCE_SHARE = {0.2: (9, 2.8), 1.0: (49, 7.0), 2.0: (99, 7.7), 4.0: (199, 7.9), 7.5: (374, 7.9)}
DRAWS = 2000  # per duration: the standard error of each share is below 0.2 points


@pytest.fixture(scope="module")
def masked_batch():
    """One training-mode pass over DRAWS utterances of every duration in one batch padded to 7.5 s."""
    torch.manual_seed(0)
    augment = SpecAugment(dim=4, channel_prob=0.0, min_channel_masks=0).train()
    with torch.no_grad():
        augment.mask_embedding.fill_(7.0)  # frames can only take this value by being masked
    lengths = torch.tensor([frames for frames, _ in REFERENCE_SHARE.values()]).repeat_interleave(DRAWS)
    T = int(lengths.max())
    x = torch.ones(len(lengths), T, 4) * (torch.arange(T)[None, :, None] < lengths[:, None, None])  # zero padding
    with torch.no_grad():
        out = augment(x, lengths)
    return out, lengths


@pytest.mark.parametrize("seconds", list(REFERENCE_SHARE))
def test_masked_share_of_real_frames_follows_the_reference(masked_batch, seconds):
    out, lengths = masked_batch
    frames, reference = REFERENCE_SHARE[seconds]
    rows = out[lengths == frames]  # (DRAWS, T, 4)
    share = 100 * (rows[:, :frames] == 7.0).all(dim=-1).float().mean().item()
    assert abs(share - reference) <= 1.5, f"{seconds} s: {share:.2f}% masked, reference {reference}%"


def test_padding_is_never_masked(masked_batch):
    out, lengths = masked_batch
    padding = torch.arange(out.shape[1])[None, :] >= lengths[:, None]  # (B, T)
    assert padding.any() and torch.all(out[padding] == 0)


def test_masks_drawn_inside_the_true_length_on_request():
    torch.manual_seed(0)
    augment = SpecAugment(dim=4, channel_prob=0.0, min_channel_masks=0, time_clip_frames=0).train()
    x = torch.randn(500, 49, 4)
    with torch.no_grad():
        masked = (augment(x, torch.full((500,), 49)) == augment.mask_embedding).all(dim=-1)  # (B, T)
    assert masked.float().mean() > 0.4  # ≥ 2 spans of 15 inside 49 frames: the old, heavier behaviour
