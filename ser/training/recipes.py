"""Each head family's training recipe from its paper, in one visible place (nanoGPT style).

- shift family (cnn/shiftcnn, lstm/shiftlstm, transformer/shiftformer; reference §2):
  AdamW 5e-4, weight decay 0.05 (none on biases and norms), 5 warm-up epochs then cosine per
  step, 100 epochs, batch 32, gradient clip 5, plain cross-entropy.
- timnet (§3): Adam 1e-3, betas (0.93, 0.98), label smoothing 0.1, batch 64, 500 epochs, constant lr.
- linear (§6, the SUPERB ER baseline): Adam 1e-4, batch 32, constant lr.
- ctarnn (§4, a reconstruction; our choice): AdamW 5e-4, weight decay 0.01, 2 warm-up epochs
  then cosine, 50 epochs, batch 32, gradient clip 5.
Every field can be overridden (`Recipe.with_overrides`); heads not listed use the shift recipe.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from ser.errors import UserInputError


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and batch settings for one training run."""

    optimizer: str = "adamw"  # adam | adamw
    lr: float = 5e-4
    weight_decay: float = 0.05  # applied to weight matrices only (not biases, norms, 1-D vectors)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: int = 5
    schedule: str = "cosine"  # cosine (per step, after warm-up) | constant
    epochs: int = 100
    batch_size: int = 32
    grad_clip: float | None = 5.0
    label_smoothing: float = 0.0

    def with_overrides(self, **overrides) -> "Recipe":
        """A copy with the non-None overrides applied (unset options keep the recipe's value)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        unknown = set(given) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise UserInputError(f"unknown recipe option(s): {', '.join(sorted(unknown))}")
        recipe = dataclasses.replace(self, **given)
        recipe.validate()
        return recipe

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(f"unknown optimizer {self.optimizer!r}", f"choose one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in ("cosine", "constant"):
            raise UserInputError(f"unknown schedule {self.schedule!r}", "choose cosine or constant")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UserInputError("epochs, batch size and learning rate must be positive")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        return cls(**{**data, "betas": tuple(data["betas"])})


SHIFT_RECIPE = Recipe()
TIMNET_RECIPE = Recipe(
    optimizer="adam", lr=1e-3, weight_decay=0.0, betas=(0.93, 0.98), warmup_epochs=0, schedule="constant",
    epochs=500, batch_size=64, grad_clip=None, label_smoothing=0.1,
)
LINEAR_RECIPE = Recipe(
    optimizer="adam", lr=1e-4, weight_decay=0.0, warmup_epochs=0, schedule="constant",
    epochs=50, batch_size=32, grad_clip=None,
)
CTARNN_RECIPE = Recipe(weight_decay=0.01, warmup_epochs=2, epochs=50)

HEAD_RECIPES = {
    "cnn": SHIFT_RECIPE, "shiftcnn": SHIFT_RECIPE,
    "lstm": SHIFT_RECIPE, "shiftlstm": SHIFT_RECIPE,
    "transformer": SHIFT_RECIPE, "shiftformer": SHIFT_RECIPE,
    "timnet": TIMNET_RECIPE,
    "linear": LINEAR_RECIPE,
    "ctarnn": CTARNN_RECIPE,
}

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def recipe_for(head: str) -> Recipe:
    """The paper recipe of a head's family (the shift recipe for heads without their own)."""
    return HEAD_RECIPES.get(head, SHIFT_RECIPE)


MAX_WARMUP_SHARE = 0.25  # of a run's steps: a run shortened below its warm-up still reaches the peak


def lr_at(step: int, recipe: Recipe, steps_per_epoch: int) -> float:
    """Learning rate at optimiser step `step` (0-based): linear warm-up, then cosine to 0 or constant.

    The warm-up lasts the recipe's epochs but at most MAX_WARMUP_SHARE of the run (the papers' 5 of
    100 epochs are untouched; `--epochs 4` warms up for 1, instead of ending at 4/5 of the peak)."""
    warmup = min(recipe.warmup_epochs * steps_per_epoch, int(MAX_WARMUP_SHARE * recipe.epochs * steps_per_epoch))
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    if recipe.schedule == "constant":
        return recipe.lr
    total = recipe.epochs * steps_per_epoch
    progress = (step - warmup) / max(1, total - warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser; weight decay only on parameters with ≥ 2 dims (no biases, norms, masks)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in trainable if p.dim() >= 2]
    plain = [p for p in trainable if p.dim() < 2]
    groups = [
        {"params": decayed, "weight_decay": recipe.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return OPTIMIZERS[recipe.optimizer](groups, lr=recipe.lr, betas=recipe.betas)
