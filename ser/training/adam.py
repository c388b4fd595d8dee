"""Adam and AdamW with torch.optim's parameter groups, updates and state dict, minus its first-use cost.

torch.optim's Optimizer methods are wrapped in `torch._disable_dynamo`, which imports torch._dynamo
the first time one is called: 2.2-2.7 s on a 2-core machine, paid by every training process and
every forked fold or sweep worker before its first step. This optimiser makes the same updates with
the same operations in the same order (torch's foreach form; on CPU torch loops over the tensors
with the same kernels, so the numbers are equal bit for bit), and its state dict is torch's, so a
checkpoint written by either loads into the other.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch

HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")
EPS = 1e-8  # torch.optim.Adam's default


class Adam:
    """torch.optim.Adam (decoupled_weight_decay=False) or AdamW (True), without amsgrad or maximize."""

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = EPS, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "decoupled_weight_decay": decoupled_weight_decay}
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = [{**defaults, **group, "params": list(group["params"])}
                                                   for group in groups]
        if not any(group["params"] for group in self.param_groups):
            raise ValueError("the optimiser got no parameters to train")
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        """Drop every gradient (torch's set_to_none=True)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        if p not in self.state:  # torch keeps the step count as a float32 scalar on the CPU
            self.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return self.state[p]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self._state_of(p) for p in params]
            exp_avgs = [state["exp_avg"] for state in states]
            exp_avg_sqs = [state["exp_avg_sq"] for state in states]
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for state in states:
                state["step"] += 1
            if decay != 0:
                if group["decoupled_weight_decay"]:
                    torch._foreach_mul_(params, 1 - lr * decay)
                else:
                    grads = torch._foreach_add(grads, params, alpha=decay)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            counts = [state["step"].item() for state in states]
            step_sizes = [-(lr / (1 - beta1**count)) for count in counts]
            denominators = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denominators, [(1 - beta2**count) ** 0.5 for count in counts])
            torch._foreach_add_(denominators, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's format: parameters numbered in group order, `state` keyed by those numbers."""
        numbers: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                numbers.setdefault(id(p), len(numbers))
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "amsgrad": False, "maximize": False,
                           "params": [numbers[id(p)] for p in group["params"]]})
        return {"state": {numbers[id(p)]: state for p, state in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Moments, step counts and hyperparameters from `saved` (this optimiser's or torch.optim's)."""
        saved_groups = saved["param_groups"]
        if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimiser state has different parameter groups than this optimiser")
        by_number = {number: p for saved_group, group in zip(saved_groups, self.param_groups)
                     for number, p in zip(saved_group["params"], group["params"])}
        self.state = {}
        for number, state in saved["state"].items():  # moments follow their parameter's dtype and device
            p = by_number[number]
            self.state[p] = {key: value if key == "step" else value.to(dtype=p.dtype, device=p.device)
                             for key, value in state.items()}
        for saved_group, group in zip(saved_groups, self.param_groups):
            group.update({key: copy.deepcopy(saved_group[key]) for key in HYPERPARAMETERS if key in saved_group})


def adamw(params: Iterable[torch.Tensor] | Iterable[dict], weight_decay: float = 1e-2, **options: Any) -> Adam:
    """torch.optim.AdamW's updates (decoupled weight decay, default 1e-2 as in torch)."""
    return Adam(params, weight_decay=weight_decay, decoupled_weight_decay=True, **options)
