"""Each head family's training recipe as its reference code runs it, in one visible place (nanoGPT
style); every recipe names the file and lines it comes from.

- shift family (cnn/shiftcnn, lstm/shiftlstm, transformer/shiftformer; reference §2):
  AdamW 5e-4, weight decay 0.05 (none on biases and norms), timm's CosineLRScheduler per step
  (warm-up from 5e-7 over 5 epochs, cosine counted from step 0 down to 5e-6), 100 epochs,
  batch 32, gradient clip 5, plain cross-entropy.
- timnet (§3): Adam 1e-3, betas (0.93, 0.98), label smoothing 0.1, batch 64, 500 epochs, constant
  lr; 10 blocks for IEMOCAP, 8 otherwise (`corpus_head_defaults`).
- linear (§6, s3prl's emotion config): Adam 1e-4, constant lr, gradient clip 1, 30,000 updates of
  32 utterances (8 accumulated batches of 4), however many epochs that takes; dev scored every
  1,000 updates (at the end of the epoch holding each 1,000th update) and at the end.
- ctarnn (§4, a reconstruction; our choice): the shift family's schedule with 2 warm-up epochs,
  weight decay 0.01, 50 epochs, batch 32, gradient clip 5.
Every field can be overridden (`Recipe.with_overrides`); heads not listed use the shift recipe.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from torch import nn

from ser.errors import UserInputError
from ser.training.adam import Adam, adamw



def with_set_options(recipe, overrides: dict):
    """A copy of a recipe dataclass with every non-None override applied, then validated; refuses
    names the recipe does not have."""
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(given) - {field.name for field in dataclasses.fields(recipe)}
    if unknown:
        raise UserInputError(f"unknown recipe option(s): {', '.join(sorted(unknown))}")
    replaced = dataclasses.replace(recipe, **given)
    replaced.validate()
    return replaced


def refuse_nonpositive(values: dict[str, float | None], zero_allowed: tuple[str, ...] = ()) -> None:
    """One line naming the first option (by its flag or name) that is not above 0 (NaN included);
    None means unset, and the options in `zero_allowed` may also be 0."""
    for flag, value in values.items():
        if value is not None and not (value > 0 or (value == 0 and flag in zero_allowed)):
            bound = "0 or more" if flag in zero_allowed else "above 0"
            raise UserInputError(f"{flag} must be {bound}, not {value:g}")


def refuse_bad_regularisers(recipe) -> None:
    """The settings `ser train`'s and `ser finetune`'s recipes share beyond the step sizes: a
    negative weight decay or warm-up, and a clip of 0 (no update at all), below 0 (an ascent) or
    NaN are refused by name, as is label smoothing outside [0, 1)."""
    refuse_nonpositive({"--weight-decay": recipe.weight_decay, "--warmup-epochs": recipe.warmup_epochs,
                        "--grad-clip": recipe.grad_clip}, zero_allowed=("--weight-decay", "--warmup-epochs"))
    if not 0 <= recipe.label_smoothing < 1:
        raise UserInputError(f"label_smoothing must be in [0, 1), not {recipe.label_smoothing:g}")


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and batch settings for one training run."""

    optimizer: str = "adamw"  # adam | adamw
    lr: float = 5e-4
    weight_decay: float = 0.05  # applied to weight matrices only (not biases, norms, 1-D vectors)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: int = 5
    schedule: str = "cosine"  # cosine (timm's CosineLRScheduler, per step) | constant
    epochs: int = 100
    batch_size: int = 32
    grad_clip: float | None = 5.0
    label_smoothing: float = 0.0
    warmup_lr: float = 0.0  # the warm-up starts here
    min_lr: float = 0.0  # the cosine ends here
    max_steps: int | None = None  # a budget of optimiser updates (s3prl style); None: `epochs` epochs
    eval_every_updates: int | None = None  # dev pass after the epoch holding every N-th update; None/0: every epoch

    def with_overrides(self, **overrides) -> "Recipe":
        """A copy with the non-None overrides applied (unset options keep the recipe's value).
        Setting `epochs` alone drops a step budget and its update cadence: the run then lasts
        that many epochs, each scored on dev."""
        recipe = self
        if overrides.get("epochs") is not None and overrides.get("max_steps") is None:
            recipe = dataclasses.replace(self, max_steps=None)
            if overrides.get("eval_every_updates") is None:
                recipe = dataclasses.replace(recipe, eval_every_updates=None)
        return with_set_options(recipe, overrides)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(f"unknown optimizer {self.optimizer!r}", f"choose one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in ("cosine", "constant"):
            raise UserInputError(f"unknown schedule {self.schedule!r}", "choose cosine or constant")
        refuse_nonpositive({"--epochs": self.epochs, "--batch-size": self.batch_size, "--lr": self.lr,
                            "max_steps": self.max_steps})
        refuse_nonpositive({"warmup_lr": self.warmup_lr, "min_lr": self.min_lr}, zero_allowed=("warmup_lr", "min_lr"))
        refuse_bad_regularisers(self)
        if self.eval_every_updates is not None and self.eval_every_updates < 0:
            raise UserInputError("--eval-every-updates must be 0 (every epoch) or positive")

    def total_epochs(self, steps_per_epoch: int) -> int:
        """Epochs the run lasts: `epochs`, or as many as the step budget needs."""
        return self.epochs if self.max_steps is None else -(-self.max_steps // steps_per_epoch)

    def schedule_warning(self) -> str | None:
        """A warning when the run ends inside (or right at the end of) its warm-up, else None."""
        if self.schedule == "cosine" and self.max_steps is None and 0 < self.warmup_epochs >= self.epochs:
            return (f"{self.epochs} epoch(s) do not exceed the {self.warmup_epochs} warm-up epochs: the learning rate "
                    f"never leaves the warm-up (pass more --epochs)")
        return None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        return cls(**{**data, "betas": tuple(data["betas"])})


# ShiftSER (github.com/ECNU-Cross-Innovation-Lab/ShiftSER): config.py lines 23 and 79-86 (batch 32,
# 100 epochs, 5 warm-up epochs, weight decay 0.05, lr 5e-4, warm-up lr 5e-7, min lr 5e-6, clip 5),
# lr_scheduler.py lines 14-21 (CosineLRScheduler, t_initial = all steps, t_in_epochs=False) and
# main.py line 125 (step_update after every optimiser step); optimizer.py (no decay on 1-D/biases).
SHIFT_RECIPE = Recipe(warmup_lr=5e-7, min_lr=5e-6)
# TIM-Net (github.com/Jiaxin-Ye/TIM-Net_SER): Code/main.py lines 20-25 (lr 1e-3, betas 0.93/0.98,
# batch 64, 500 epochs), lines 29 and 37-38 (8 blocks, 10 for IEMOCAP; see corpus_head_defaults);
# label smoothing 0.1 and a constant lr in Code/Model.py.
TIMNET_RECIPE = Recipe(
    optimizer="adam", lr=1e-3, weight_decay=0.0, betas=(0.93, 0.98), warmup_epochs=0, schedule="constant",
    epochs=500, batch_size=64, grad_clip=None, label_smoothing=0.1,
)
# s3prl (github.com/s3prl/s3prl): s3prl/downstream/emotion/config.yaml lines 2-4 (30,000 updates,
# gradient clip 1, 8 accumulated batches) and 15-17 (Adam 1e-4, no scheduler), line 30 (batches of 4):
# 8 × 4 = 32 utterances per update, the loss divided by 8 (s3prl/downstream/runner.py) = a batch of 32.
# Line 7, `eval_step: 1000`: dev is scored every 1,000 updates (runner.py counts optimiser updates,
# after accumulation), not every epoch: on a 535-clip corpus an epoch is ≈ 11 updates.
LINEAR_RECIPE = Recipe(
    optimizer="adam", lr=1e-4, weight_decay=0.0, warmup_epochs=0, schedule="constant",
    epochs=50, batch_size=32, grad_clip=1.0, max_steps=30_000, eval_every_updates=1_000,
)
# CTA-RNN has no public code: our choice, the shift family's schedule with a shorter warm-up.
CTARNN_RECIPE = Recipe(weight_decay=0.01, warmup_epochs=2, epochs=50, warmup_lr=5e-7, min_lr=5e-6)

HEAD_RECIPES = {
    "cnn": SHIFT_RECIPE, "shiftcnn": SHIFT_RECIPE,
    "lstm": SHIFT_RECIPE, "shiftlstm": SHIFT_RECIPE,
    "transformer": SHIFT_RECIPE, "shiftformer": SHIFT_RECIPE,
    "timnet": TIMNET_RECIPE,
    "linear": LINEAR_RECIPE,
    "ctarnn": CTARNN_RECIPE,
}

OPTIMIZERS = {"adam": Adam, "adamw": adamw}  # torch.optim's updates and checkpoints (adam.py)


def recipe_for(head: str) -> Recipe:
    """The paper recipe of a head's family (the shift recipe for heads without their own)."""
    return HEAD_RECIPES.get(head, SHIFT_RECIPE)


def cosine_lr(t: int, recipe: Recipe, steps_per_epoch: int) -> float:
    """timm's CosineLRScheduler value after update t (t_in_epochs=False, one cycle): a linear warm-up
    from `warmup_lr` over the warm-up steps, otherwise a cosine counted from step 0 (not from the end
    of the warm-up) over all the run's steps, from `lr` down to `min_lr`, then `min_lr`."""
    warmup = recipe.warmup_epochs * steps_per_epoch
    if t < warmup:
        return recipe.warmup_lr + t * (recipe.lr - recipe.warmup_lr) / warmup
    total = recipe.total_epochs(steps_per_epoch) * steps_per_epoch
    if t >= total:
        return recipe.min_lr
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * t / total))


def lr_at(step: int, recipe: Recipe, steps_per_epoch: int) -> float:
    """Learning rate of optimiser step `step` (0-based) as the reference runs it: ShiftSER sets the
    rate for update t after taking it (main.py line 125), so step s uses the value of s − 1 (the
    warm-up start for s = 0). Constant schedules use `lr` after their warm-up."""
    if recipe.schedule == "constant":
        warmup = recipe.warmup_epochs * steps_per_epoch
        return recipe.lr * (step + 1) / warmup if step < warmup else recipe.lr
    return cosine_lr(max(step - 1, 0), recipe, steps_per_epoch)


def corpus_head_defaults(head: str, corpus: str | None) -> dict:
    """Head options that the reference sets per corpus, used unless the run sets them: TIM-Net has
    10 blocks for IEMOCAP (TIM-Net_SER Code/main.py lines 37-38), 8 otherwise (the head's default)."""
    if head == "timnet" and corpus is not None and corpus.lower().startswith("iemocap"):
        return {"num_blocks": 10}
    return {}


def build_optimizer(model: nn.Module, recipe: Recipe) -> Adam:
    """The recipe's optimiser; weight decay only on parameters with ≥ 2 dims (no biases, norms, masks)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in trainable if p.dim() >= 2]
    plain = [p for p in trainable if p.dim() < 2]
    groups = [
        {"params": decayed, "weight_decay": recipe.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return OPTIMIZERS[recipe.optimizer](groups, lr=recipe.lr, betas=recipe.betas)
