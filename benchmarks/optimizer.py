"""ser's Adam/AdamW (ser/training/adam.py) ÷ torch.optim's, for every head's recipe optimiser.

Prints, side by side in one run:
- the seconds a fresh training process spends building its optimiser and taking the first step
  (torch.optim imports torch._dynamo then), alternating the two in new interpreters;
- ms per optimiser step on each head's parameters (D=80), the two timed alternately;
- the largest parameter difference after the timed steps (0: the same numbers bit for bit).
ser applies each operation to all tensors at once (torch's foreach form, its default on CUDA);
torch.optim loops over the tensors on CPU, which keeps a large tensor in cache across its
operations: heads with few large tensors (ctarnn) step a little slower with ser's, the rest faster.

    python benchmarks/optimizer.py [--rounds 3] [--steps 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from ser.heads import create_head
from ser.training.recipes import build_optimizer, recipe_for

HEADS = ("linear", "cnn", "shiftcnn", "shiftlstm", "shiftformer", "timnet", "ctarnn")
TORCH = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
FIRST_STEP = """
import time, torch
model = torch.nn.Linear(80, 4)
model(torch.randn(8, 80)).sum().backward()
began = time.perf_counter()
optimizer = {factory}(model.parameters(), lr=1e-3)
optimizer.step()
print(time.perf_counter() - began)
"""


def first_step_seconds(factory_import: str, factory: str) -> float:
    """Seconds a fresh interpreter (torch already imported) takes to build `factory` and step once."""
    script = factory_import + FIRST_STEP.format(factory=factory)
    return float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


def step_times(head_name: str, steps: int) -> tuple[float, float, float]:
    """(ser ms/step, torch ms/step, largest parameter difference) on `head_name`'s recipe optimiser."""
    recipe = recipe_for(head_name)
    heads, optimizers = [], []
    for make in ("ser", "torch"):
        torch.manual_seed(0)
        head = create_head(head_name, 80, 1, 4)
        optimizer = build_optimizer(head, recipe)
        if make == "torch":  # the same groups (decay on ≥ 2-d weights only) in torch.optim's optimiser
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
            optimizer = TORCH[recipe.optimizer](groups, lr=recipe.lr, betas=recipe.betas)
        optimizers.append(optimizer)
        heads.append(head)
    for ours, theirs in zip(*(h.parameters() for h in heads)):
        ours.grad = torch.randn_like(ours) * 1e-3
        theirs.grad = ours.grad.clone()
    times: list[list[float]] = [[], []]
    for _ in range(steps // 10):
        for which, optimizer in enumerate(optimizers):
            began = time.perf_counter()
            for _ in range(10):
                optimizer.step()
            times[which].append((time.perf_counter() - began) / 10)
    difference = max((a - b).abs().max().item() for a, b in zip(*(h.parameters() for h in heads)))
    return 1000 * statistics.median(times[0]), 1000 * statistics.median(times[1]), difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per optimiser")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per head and optimiser")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(first_step_seconds("from ser.training.adam import adamw\n", "adamw"))
        theirs.append(first_step_seconds("", "torch.optim.AdamW"))
    print(f"first step of a fresh process: ser {statistics.median(ours):.3f} s, torch.optim "
          f"{statistics.median(theirs):.3f} s (median of {args.rounds} each, alternating)")
    print(f"\n{'head':<12} {'optimiser':<9} {'ser ms/step':>11} {'torch ms/step':>13} {'ratio':>6} {'max diff':>9}")
    for name in HEADS:
        ser_ms, torch_ms, difference = step_times(name, args.steps)
        print(f"{name:<12} {recipe_for(name).optimizer:<9} {ser_ms:>11.3f} {torch_ms:>13.3f} "
              f"{ser_ms / torch_ms:>6.2f} {difference:>9.1e}")


if __name__ == "__main__":
    main()
