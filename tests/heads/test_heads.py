"""Every registered head: shapes, gradients, padding invariance, rebuilding, options, sizes."""

import json
import subprocess
import sys

import pytest
import torch

from ser.errors import UnknownNameError, UserInputError
from ser.heads import HEADS, Head, create_head

DIM, LAYERS, CLASSES = 16, 3, 4
ALL_HEADS = [name for name in HEADS.names() if issubclass(HEADS.get(name).head_class, Head)]  # audio-only heads


def batch(lengths, dim=DIM, seed=0):
    """A zero-padded batch (B, L, T, D) for the given lengths."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    x = torch.randn(len(lengths), LAYERS, int(lengths.max()), dim, generator=generator)
    return x * (torch.arange(x.shape[2])[None, None, :, None] < lengths[:, None, None, None]), lengths


def test_the_expected_heads_are_registered():
    expected = {"linear", "cnn", "shiftcnn", "lstm", "shiftlstm", "transformer", "shiftformer", "timnet", "ctarnn"}
    assert expected <= set(ALL_HEADS) and "multimodal" in HEADS


def test_a_missing_required_option_is_a_user_error_and_kwargs_rebuild_the_multimodal_head():
    with pytest.raises(UserInputError, match="text_dim"):
        create_head("multimodal", DIM, LAYERS, CLASSES, text_layers=2)
    head = create_head("multimodal", DIM, LAYERS, CLASSES, text_dim=8, text_layers=2)
    rebuilt = create_head(**json.loads(json.dumps(head.constructor_kwargs)))
    assert rebuilt.constructor_kwargs == head.constructor_kwargs and rebuilt.constructor_kwargs["text_dim"] == 8


@pytest.mark.parametrize("name", ALL_HEADS)
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    head = create_head(name, DIM, LAYERS, CLASSES).train()
    x, lengths = batch([380, 23, 7])  # ≥ 374 frames: SpecAugment's time masks always fall inside the first
    logits = head(x, lengths)
    assert logits.shape == (3, CLASSES) and torch.isfinite(logits).all()
    (logits * torch.randn(3, CLASSES)).sum().backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("name", ALL_HEADS)
def test_logits_do_not_depend_on_padding(name):
    torch.manual_seed(0)
    head = create_head(name, DIM, LAYERS, CLASSES).eval()
    x, lengths = batch([40, 23, 7])
    with torch.no_grad():
        together = head(x, lengths)
        for row, n in enumerate(lengths.tolist()):
            alone = head(x[row : row + 1, :, :n], lengths[row : row + 1])
            torch.testing.assert_close(together[row : row + 1], alone, atol=2e-5, rtol=1e-4)
        extra = torch.cat([x, torch.zeros(3, LAYERS, 9, DIM)], dim=2)  # 9 more padded frames
        torch.testing.assert_close(head(extra, lengths), together, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("options", [{}, {"layer_norm": True, "layers": [0, 2]}, {"layers": 1}])
def test_the_linear_probe_computes_the_superb_order_of_operations(options):
    # SUPERB projects every frame, then averages the real frames; `ser` averages first (the
    # layer sum and the projection are affine per frame), which must give the same logits.
    torch.manual_seed(0)
    head = create_head("linear", DIM, LAYERS, CLASSES, **options)
    x, lengths = batch([40, 23, 7])
    for mode in (head.eval(), head.train()):  # in training too: the probe has no SpecAugment by default
        frames = head.layer_sum(x) * (torch.arange(40)[None, :, None] < lengths[:, None, None])  # (B, T, D), padding zero
        projected = head.project(frames)  # (B, T, hidden)
        pooled = torch.stack([projected[row, :n].mean(dim=0) for row, n in enumerate(lengths.tolist())])
        torch.testing.assert_close(mode(x, lengths), head.classifier(pooled), atol=1e-5, rtol=1e-5)


def test_timnet_training_statistics_ignore_padding():
    heads = []
    for _ in range(2):
        torch.manual_seed(0)
        heads.append(create_head("timnet", DIM, LAYERS, CLASSES, dropout=0.0, num_blocks=3).train())
    x, lengths = batch([30, 11])
    extra = torch.cat([x, torch.zeros(2, LAYERS, 17, DIM)], dim=2)  # 17 more padded frames
    torch.testing.assert_close(heads[0](extra, lengths), heads[1](x, lengths))
    norm_a, norm_b = heads[0].forward_blocks[2].norms[1], heads[1].forward_blocks[2].norms[1]
    torch.testing.assert_close(norm_a.running_mean, norm_b.running_mean)
    torch.testing.assert_close(norm_a.running_var, norm_b.running_var)
    assert not torch.equal(norm_a.running_var, torch.ones_like(norm_a.running_var))  # they were updated


def conv1d_timnet(head, x):
    """TIM-Net written plainly with torch's Conv1d and BatchNorm1d on a batch without padding."""
    import torch.nn.functional as F

    def block(tab, y):  # (B, C, T)
        gate = y
        for conv, norm in zip(tab.convs, tab.norms):
            y = conv(F.pad(y, ((conv.kernel_size[0] - 1) * tab.dilation, 0)))
            y = tab.dropout(F.relu(torch.nn.BatchNorm1d.forward(norm, y)))
        return gate * torch.sigmoid(y)

    h = head.layer_sum(x).transpose(1, 2)  # (B, D, T)
    ahead, behind = head.forward_input(h), head.backward_input(h.flip(2))
    pooled = []
    for forward_block, backward_block in zip(head.forward_blocks, head.backward_blocks):
        ahead, behind = block(forward_block, ahead), block(backward_block, behind)
        pooled.append((ahead + behind).mean(dim=2))  # (B, C)
    return head.classifier(torch.einsum("bjc,j->bc", torch.stack(pooled, dim=1), head.fusion))


def test_timnet_has_the_parameters_of_the_official_keras_model():
    """Counted from Jiaxin-Ye/TIM-Net_SER (Code/TIMNET.py, Model.py) for EmoDB (39 MFCCs, 7
    classes, 39 filters, 8 dilations): two 1x1 input convs 2 x 1,560; 16 TABs of two causal
    Conv1D (3,081) + BatchNormalization (156, 78 of them moving statistics); WeightLayer 8; Dense
    280. Keras reports 106,992 parameters, 2,496 of them non-trainable."""
    head = create_head("timnet", 39, 1, 7)
    trainable = sum(p.numel() for p in head.parameters())
    moving = sum(b.numel() for name, b in head.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert (trainable, moving) == (106_992 - 2_496, 2_496)


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_timnet_on_packed_frames_computes_what_conv1d_computes(kernel_size):
    torch.manual_seed(0)
    head = create_head("timnet", DIM, LAYERS, CLASSES, num_blocks=4, kernel_size=kernel_size).train()
    x, lengths = batch([20, 20, 20])
    torch.manual_seed(1)
    packed = head(x, lengths)  # dropout on: the same channel draws as nn.Dropout1d
    packed_norm = head.backward_blocks[3].norms[0].running_var.clone()
    torch.manual_seed(1)
    plain = conv1d_timnet(head, x)
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)
    assert not torch.equal(packed_norm, head.backward_blocks[3].norms[0].running_var)  # both updated it
    gradients = [torch.autograd.grad(out.square().sum(), list(head.parameters())) for out in (packed, plain)]
    for packed_grad, plain_grad in zip(*gradients):
        torch.testing.assert_close(packed_grad, plain_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ALL_HEADS)
def test_constructor_kwargs_rebuild_the_same_head(name):
    torch.manual_seed(1)
    head = create_head(name, DIM, LAYERS, CLASSES, layers=[0, 2]).eval()
    kwargs = json.loads(json.dumps(head.constructor_kwargs))
    assert kwargs["name"] == name and kwargs["in_dim"] == DIM and kwargs["layers"] == [0, 2]
    rebuilt = create_head(**kwargs).eval()
    rebuilt.load_state_dict(head.state_dict())
    x, lengths = batch([12, 5])
    torch.testing.assert_close(rebuilt(x, lengths), head(x, lengths))
    assert rebuilt.constructor_kwargs == kwargs


@pytest.mark.parametrize("name", ALL_HEADS)
def test_layer_weights_are_a_softmax_or_one_hot(name):
    weights = create_head(name, DIM, LAYERS, CLASSES).layer_weights()
    assert weights.shape == (LAYERS,) and torch.allclose(weights.sum(), torch.tensor(1.0))
    single = create_head(name, DIM, LAYERS, CLASSES, layers=1)
    assert single.layer_weights().tolist() == [0.0, 1.0, 0.0]
    x, lengths = batch([10, 6])
    single.eval()(x, lengths)  # a single layer runs without weights


def test_none_options_keep_the_preset_defaults():
    head = create_head("shiftcnn", DIM, LAYERS, CLASSES, n_div=None, shift_placement=None)
    assert head.constructor_kwargs["n_div"] == 16 and head.constructor_kwargs["shift_placement"] == "residual"


def test_cli_style_overrides_reach_the_shift():
    head = create_head("shiftcnn", DIM, LAYERS, CLASSES, n_div=8, shift_placement="inplace", bidirectional=True)
    shift = head.blocks[1].shift
    assert (shift.n_div, shift.bidirectional, head.blocks[1].placement) == (8, True, "inplace")


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(UserInputError) as caught:
        create_head("shiftlstm", DIM, LAYERS, CLASSES, kernel_size=3)
    assert "kernel_size" in caught.value.message and "n_div" in caught.value.hint


def test_shift_options_on_a_head_that_does_not_shift_are_refused():
    with pytest.raises(UserInputError) as caught:
        create_head("cnn", DIM, LAYERS, CLASSES, n_div=8)
    assert "n_div" in caught.value.message and "shiftcnn" in caught.value.hint
    shifting = create_head("cnn", DIM, LAYERS, CLASSES, n_div=8, shift_placement="residual")
    assert shifting.constructor_kwargs["n_div"] == 8


def test_unknown_head_suggests_a_name():
    with pytest.raises(UnknownNameError) as caught:
        create_head("shiftcn", DIM, LAYERS, CLASSES)
    assert "shiftcnn" in caught.value.hint


def test_same_seed_same_initial_weights():
    torch.manual_seed(5)
    first = create_head("shiftformer", DIM, LAYERS, CLASSES)
    torch.manual_seed(5)
    second = create_head("shiftformer", DIM, LAYERS, CLASSES)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "names, expected",
    [(("cnn", "shiftcnn"), 9_465_604), (("lstm", "shiftlstm"), 9_459_460), (("shiftformer",), 9_451_780),
     (("transformer",), 13_094_020)],
)
def test_reference_parameter_counts_at_768(names, expected):
    """reference.md §2: everything but the layer weights (incl. the 768-d SpecAugment mask vector),
    for all six ShiftSER presets; the transformer's is ShiftSER's relative_key_query Transformer."""
    for name in names:
        head = create_head(name, 768, 13, 4)
        count = sum(p.numel() for n, p in head.named_parameters() if not n.startswith("layer_sum."))
        assert count == expected, name


def test_ser_list_heads_describes_every_head():
    result = subprocess.run(
        [sys.executable, "-c", "from ser.cli import run; run()", "list", "heads"],
        capture_output=True, text=True, env={"COLUMNS": "250", "PATH": ""}, check=True,
    )
    for name in HEADS.names():
        assert name in result.stdout
    assert "per direction" in result.stdout and "reconstruction" in result.stdout
