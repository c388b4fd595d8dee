"""Adam / AdamW for K stacked members at once, each member following torch's optimiser exactly.

Every parameter is one tensor (K, …); member k has its own learning rate (its schedule), step
count, moments and gradient-norm clip, and only `active` members move (a member whose fold has
fewer batches, that already finished, or that diverged stays as it is). A member's moments
convert to and from a torch optimiser's state dict, so its checkpoint is a solo run's.
"""

from __future__ import annotations

import torch

from ser.training.adam import EPS, Adam
from ser.training.recipes import Recipe


class StackedAdam:
    """Adam(W) over `params` {name: (K, …) leaf tensor}; `weight_decay` {name: decay}."""

    def __init__(self, params: dict[str, torch.Tensor], weight_decay: dict[str, float], recipe: Recipe):
        self.params, self.weight_decay = params, weight_decay
        self.beta1, self.beta2 = recipe.betas
        self.decoupled = recipe.optimizer == "adamw"
        self.grad_clip = recipe.grad_clip
        first = next(iter(params.values()))
        self.size = first.shape[0]
        self.exp_avg = {name: torch.zeros_like(p) for name, p in params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(p) for name, p in params.items()}
        self.steps = torch.zeros(self.size, dtype=torch.float64, device=first.device)  # (K,)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def _clip_factors(self, grads: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-member factor min(1, clip / (‖g_k‖ + 1e-6)) as torch's clip_grad_norm_ computes it → (K,)."""
        if self.grad_clip is None:
            return None
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()]).norm(dim=0)  # (K,)
        return (self.grad_clip / (norms + 1e-6)).clamp(max=1.0)

    @torch.no_grad()
    def step(self, lrs: torch.Tensor, active: torch.Tensor) -> None:
        """One update of the `active` members (K,) bool with learning rates `lrs` (K,)."""
        grads = {name: p.grad for name, p in self.params.items() if p.grad is not None}
        if not grads:
            return
        factors = self._clip_factors(grads)
        self.steps = torch.where(active, self.steps + 1, self.steps)
        steps = self.steps.clamp(min=1)
        step_size = lrs.double() / (1 - self.beta1 ** steps)  # (K,)
        correction = (1 - self.beta2 ** steps).sqrt()  # (K,)
        for name, grad in grads.items():
            p = self.params[name]
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            if factors is not None:
                grad = grad * factors.to(grad.dtype).view(shape)
            decay = self.weight_decay[name]
            updated = p
            if decay and self.decoupled:
                updated = p * (1 - lrs.to(p.dtype).view(shape) * decay)
            elif decay:
                grad = grad + decay * p
            exp_avg = self.exp_avg[name].lerp(grad, 1 - self.beta1)
            exp_avg_sq = self.exp_avg_sq[name] * self.beta2 + (1 - self.beta2) * grad * grad
            denom = exp_avg_sq.sqrt() / correction.to(p.dtype).view(shape) + EPS
            updated = updated - step_size.to(p.dtype).view(shape) * exp_avg / denom
            p.copy_(torch.where(on, updated, p))
            self.exp_avg[name] = torch.where(on, exp_avg, self.exp_avg[name])
            self.exp_avg_sq[name] = torch.where(on, exp_avg_sq, self.exp_avg_sq[name])

    def member_state(self, k: int, optimizer: Adam, names: dict[torch.nn.Parameter, str],
                     lr: float) -> dict:
        """Member k's moments as `optimizer`'s state dict (a solo run's optimiser over the same head)."""
        optimizer.state.clear()
        if self.steps[k] > 0:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    name = names[p]
                    optimizer.state[p] = {"step": torch.tensor(float(self.steps[k])),
                                          "exp_avg": self.exp_avg[name][k].detach().clone(),
                                          "exp_avg_sq": self.exp_avg_sq[name][k].detach().clone()}
        for group in optimizer.param_groups:
            group["lr"] = lr
        return optimizer.state_dict()

    def load_member(self, k: int, optimizer: Adam, names: dict[torch.nn.Parameter, str]) -> None:
        """Member k's moments from `optimizer` (after its load_state_dict of a checkpoint)."""
        for p, state in optimizer.state.items():
            name = names[p]
            self.exp_avg[name][k] = state["exp_avg"].to(self.exp_avg[name].device)
            self.exp_avg_sq[name][k] = state["exp_avg_sq"].to(self.exp_avg_sq[name].device)
            self.steps[k] = float(state["step"])
