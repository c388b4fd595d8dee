"""The fine-tuning setting's recipe and run configuration (reference §2), in one visible place.

The paper (ShiftSER) recipe: wav2vec2-base, CNN feature encoder frozen, transformer trained in
train mode (dropout, LayerDrop 0.05), Adam 5e-4 without weight decay, a warm-up / flat /
linear-decay schedule (warm-up 5 epochs, flat as long again, then linear to 0), batch 32,
100 epochs, gradient clip 5, audio cut to 7.5 s.

The reference counts that schedule in optimiser steps but steps it once per epoch, so its
learning rate starts at 0 and only reaches ≈ 7e-5 after 100 epochs (`schedule="reference"`
reproduces this for parity). The default steps it per optimiser step as intended; then the
backbone would see the full 5e-4, far above what wav2vec2-style models tolerate, so the backbone
gets its own `backbone_lr` (5e-5: close to the reference's effective rate) and the head keeps 5e-4.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ser.errors import UserInputError
from ser.heads import HEADS
from ser.training.config import head_constructor_options
from ser.training.recipes import OPTIMIZERS, refuse_bad_regularisers, refuse_nonpositive, with_set_options

SCHEDULES = ("step", "reference", "constant")
BATCHING_MODES = ("auto", "crop", "accumulate", "pad")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class FinetuneRecipe:
    """Optimiser, schedule, batch and backbone-regularisation settings of a fine-tuning run."""

    optimizer: str = "adam"  # adam | adamw
    lr: float = 5e-4  # the head's peak learning rate
    backbone_lr: float = 5e-5  # the transformer's peak learning rate
    weight_decay: float = 0.0  # weight matrices only (as `ser train`)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: int = 5  # then flat for as long again, then linear decay to 0
    schedule: str = "step"  # step (per optimiser step) | reference (per epoch, the quirk) | constant
    epochs: int = 100
    batch_size: int = 32
    grad_clip: float | None = 5.0
    label_smoothing: float = 0.0
    layerdrop: float | None = 0.05  # None: the model config's own
    max_seconds: float | None = 7.5  # audio cut to this length (None: whole utterances)

    def with_overrides(self, **overrides) -> "FinetuneRecipe":
        """A copy with the non-None overrides applied."""
        return with_set_options(self, overrides)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(f"unknown optimizer {self.optimizer!r}", f"choose one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UserInputError(f"unknown schedule {self.schedule!r}", f"choose one of: {', '.join(SCHEDULES)}")
        refuse_nonpositive({"--epochs": self.epochs, "--batch-size": self.batch_size, "--lr": self.lr,
                            "--backbone-lr": self.backbone_lr}, zero_allowed=("--backbone-lr",))
        refuse_bad_regularisers(self)
        if self.layerdrop is not None and not 0 <= self.layerdrop < 1:
            raise UserInputError(f"--layerdrop {self.layerdrop} is outside [0, 1)")
        if self.max_seconds is not None and self.max_seconds < 0.05:
            raise UserInputError(f"--max-seconds {self.max_seconds} is too short", "give at least 0.05 s")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneRecipe":
        return cls(**{**data, "betas": tuple(data["betas"])})


PAPER_RECIPE = FinetuneRecipe()
SHORT_NAMES = {"epochs": "e", "batch_size": "bs", "lr": "lr", "backbone_lr": "blr", "weight_decay": "wd",
               "warmup_epochs": "wu", "max_seconds": "max", "layerdrop": "ld", "label_smoothing": "ls",
               "grad_clip": "clip", "schedule": "sched-", "optimizer": ""}
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(FinetuneRecipe))


def tristage_factor(step: int, warmup: int, total: int) -> float:
    """The reference's lambda: linear warm-up from 0, flat for `warmup` more, linear decay to 0 at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    if step < 2 * warmup:
        return 1.0
    return max(0.0, (total - step) / max(1, total - 2 * warmup))


def lr_factor(recipe: FinetuneRecipe, step: int, epoch: int, steps_per_epoch: int) -> float:
    """Multiplier of both peak rates before optimiser step `step` (0-based) in epoch `epoch` (0-based).

    `step`: the intended per-step schedule (its first step already gets a non-zero rate);
    `reference`: the same lambda, counted in steps but advanced once per epoch (the quirk).
    """
    warmup, total = recipe.warmup_epochs * steps_per_epoch, recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant":
        return 1.0
    if recipe.schedule == "reference":
        return tristage_factor(epoch, warmup, total)
    return tristage_factor(step + 1, warmup, total)


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run: backbone, head, recipe, how batches are formed, protocol and seed."""

    model: str  # alias, hub id or local directory
    head: str
    head_kwargs: dict = field(default_factory=dict)
    recipe: FinetuneRecipe = field(default_factory=FinetuneRecipe)
    freeze_layers: int = 0  # transformer layers frozen from the bottom (≥ 1 also freezes the input projection)
    batching: str = "auto"  # auto | crop | accumulate | pad
    conv_cache: bool = False  # train from the cached output of the frozen CNN encoder
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    gradient_checkpointing: bool = False
    random_init: bool = False
    seed: int = 0
    task: str = "categorical"
    folds: str | None = None
    k: int | None = None
    dev: str = "auto"  # auto | speaker | random (ser/data/fold.py dev_split)
    dev_fraction: float = 0.2
    fold_seed: int = 0
    corpus: str | None = None
    record_test_curve: bool = False  # score test every epoch: history's test columns + the optimistic best epoch

    @classmethod
    def create(cls, model: str, head: str, head_kwargs: dict | None = None, **options) -> "FinetuneConfig":
        """The paper recipe with every non-None recipe option in `options` applied."""
        recipe = PAPER_RECIPE.with_overrides(**{name: options.pop(name) for name in RECIPE_FIELDS if name in options})
        options = {name: value for name, value in options.items() if value is not None}
        set_kwargs = {key: value for key, value in (head_kwargs or {}).items() if value is not None}
        config = cls(model=model, head=head, head_kwargs=set_kwargs, recipe=recipe, **options)
        config.validate()
        return config

    def validate(self) -> None:
        HEADS.get(self.head).check(head_constructor_options(self.head_kwargs))  # before the backbone loads
        if self.batching not in BATCHING_MODES:
            raise UserInputError(f"unknown batching {self.batching!r}", f"choose one of: {', '.join(BATCHING_MODES)}")
        if self.precision not in PRECISIONS:
            raise UserInputError(f"unknown precision {self.precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
        if self.freeze_layers < 0:
            raise UserInputError("--freeze-layers must be 0 or more")

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    def to_dict(self) -> dict:
        """Flat, like `ser train`'s config.json: the recipe's fields beside the run's own."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "recipe"}
        data["head_kwargs"] = dict(self.head_kwargs)
        return {"setting": "finetune", **data, **self.recipe.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneConfig":
        own = {f.name for f in dataclasses.fields(cls)} - {"recipe"}
        recipe = FinetuneRecipe.from_dict({name: data[name] for name in RECIPE_FIELDS})
        return cls(recipe=recipe, **{name: data[name] for name in own if name in data})

    def run_name(self) -> str:
        """`ft-<head>-…-s<seed>`: the head, its options, what differs from the paper recipe, the seed."""
        parts = ["ft", self.head]
        parts += [f"{key}{value}" for key, value in sorted(self.head_kwargs.items())]
        for name in RECIPE_FIELDS:
            value = getattr(self.recipe, name)
            if value != getattr(PAPER_RECIPE, name):
                prefix = SHORT_NAMES.get(name, name)
                parts.append(f"{prefix}{value:g}" if isinstance(value, float) else f"{prefix}{value}")
        if self.freeze_layers:
            parts.append(f"freeze{self.freeze_layers}")
        if self.batching != "auto":
            parts.append(self.batching)
        if self.conv_cache:
            parts.append("conv")
        if self.precision != "fp32":
            parts.append(self.precision)
        if self.folds is not None:
            parts.append(self.folds + (str(self.k) if self.k else ""))
        if self.random_init:
            parts.append("random")
        if self.task != "categorical":
            parts.append(self.task)
        parts.append(f"s{self.seed}")
        name = "-".join(str(part) for part in parts)
        return "".join(c if c.isalnum() or c in "._-=" else "_" for c in name)
