"""ser's Adam/AdamW against torch.optim's: the same parameters and moments bit for bit, state dicts
that load either way, and no torch._dynamo import (the cost it exists to avoid)."""

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from ser.heads import create_head
from ser.training.adam import Adam, adamw

PAIRS = [(Adam, torch.optim.Adam), (adamw, torch.optim.AdamW)]


def _groups(head: nn.Module) -> list[dict]:
    return [{"params": [p for p in head.parameters() if p.dim() >= 2], "weight_decay": 0.05},
            {"params": [p for p in head.parameters() if p.dim() < 2], "weight_decay": 0.0}]


def _train(head: nn.Module, optimizer, steps: range) -> None:
    """Steps with a changing learning rate, gradient clipping and, on odd steps, a frozen classifier."""
    frozen = list(head.parameters())[-1]
    for step in steps:
        torch.manual_seed(step)  # the data and the head's SpecAugment masks
        x = torch.randn(6, 2, 40, 16)  # (B, L, T, D)
        lengths = torch.tensor([40, 33, 40, 21, 38, 40])
        targets = torch.randint(0, 4, (6,))
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * (1 + step % 5)
        for p in head.parameters():
            p.grad = None
        nn.functional.cross_entropy(head(x, lengths), targets).backward()
        if step % 2:
            frozen.grad = None  # no gradient: torch skips the parameter and its step count
        nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _same_state(ours, theirs) -> bool:
    a, b = ours.state_dict()["state"], theirs.state_dict()["state"]
    return a.keys() == b.keys() and all(torch.equal(a[k][name], b[k][name]) for k in a for name in a[k])


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["adam", "adamw"])
def test_updates_equal_torch_optim_bit_for_bit(ours, theirs):
    torch.manual_seed(0)
    head = create_head("shiftcnn", 16, 2, 4)
    twin = copy.deepcopy(head)
    optimizer, reference = ours(_groups(head), lr=1e-3, betas=(0.9, 0.98)), theirs(_groups(twin), lr=1e-3, betas=(0.9, 0.98))
    _train(head, optimizer, range(12))
    _train(twin, reference, range(12))
    assert not _same(head, create_head("shiftcnn", 16, 2, 4))  # it trained
    assert _same(head, twin) and _same_state(optimizer, reference)
    assert optimizer.state_dict()["state"][len(list(head.parameters())) - 1]["step"].item() == 6  # the frozen one


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["adam", "adamw"])
def test_state_dicts_load_either_way_and_training_continues_identically(ours, theirs):
    torch.manual_seed(1)
    head = create_head("shiftcnn", 16, 2, 4)
    reference = theirs(_groups(head), lr=1e-3)
    _train(head, reference, range(5))
    saved_head, saved = copy.deepcopy(head.state_dict()), copy.deepcopy(reference.state_dict())

    resumed = create_head("shiftcnn", 16, 2, 4)
    resumed.load_state_dict(saved_head)
    optimizer = ours(_groups(resumed), lr=0.5)  # the checkpoint's rates replace these
    optimizer.load_state_dict(saved)
    assert optimizer.param_groups[0]["lr"] == reference.param_groups[0]["lr"]
    _train(head, reference, range(5, 10))
    _train(resumed, optimizer, range(5, 10))
    assert _same(head, resumed) and _same_state(optimizer, reference)

    back = theirs(_groups(head), lr=0.5)  # and ours loads into torch's
    back.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert _same_state(optimizer, back) and back.param_groups[1]["weight_decay"] == 0.0


def test_other_parameter_groups_and_no_parameters_are_refused():
    head = create_head("shiftcnn", 16, 2, 4)
    with pytest.raises(ValueError, match="parameter groups"):
        adamw(list(head.parameters())).load_state_dict(adamw(_groups(head)).state_dict())
    with pytest.raises(ValueError, match="no parameters"):
        Adam([{"params": []}, {"params": []}])


def test_training_steps_do_not_import_torch_dynamo():
    script = ("import sys, torch\nfrom ser.training.adam import adamw\n"
              "model = torch.nn.Linear(3, 2)\noptimizer = adamw(model.parameters(), lr=1e-3)\n"
              "model(torch.randn(4, 3)).sum().backward()\n"
              "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\noptimizer.step()\noptimizer.zero_grad()\n"
              "print('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
