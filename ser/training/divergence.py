"""Divergence: a training loss or head output that is NaN/Inf, or finite but absurd, ends the run
with `DivergedError`.

No metric is ever computed from such outputs (they score as a constant prediction, e.g. UA 0.25
on four classes, and look like a result). "Absurd" holds for any corpus because every loss of
ser's tasks is scale-free: cross-entropy starts near ln(classes) (≈ 1.4 for 4, < 7 for 1,000),
1 − CCC lies in [0, 2] on normalised targets, and their mixtures (distillation) stay between. So:
- a training loss above LOSS_LIMIT (10^4: over three orders of magnitude above any of these at
  initialisation) is an explosion, e.g. `--head linear --lr 1e6` reaching a dev loss of 3e16;
- outputs (logits, or normalised arousal/valence/dominance) beyond ±OUTPUT_LIMIT are too: float32
  softmax already gives probabilities of exactly 0 and 1 for logits 100 apart.
The error message starts with `DIVERGED_PREFIX`, which is how run tables tell a diverged run from
a failed one.
"""

from __future__ import annotations

import math

import numpy as np

from ser.errors import DivergedError

DIVERGED_PREFIX = "training diverged"
HINT = "lower --lr (or add gradient clipping); a rerun with the same settings diverges again"
LOSS_LIMIT = 1e4  # a training loss above this has exploded (see the module docstring)
OUTPUT_LIMIT = 1e4  # a head output beyond ± this has exploded


def check_loss(value: float, epoch: int, step: int, lr: float) -> None:
    """Raise DivergedError when the training loss of a step is NaN, infinite or above LOSS_LIMIT."""
    if not math.isfinite(value):
        raise DivergedError(f"{DIVERGED_PREFIX}: the training loss is {value} at epoch {epoch}, step {step} "
                            f"(lr {lr:g})", HINT)
    if value > LOSS_LIMIT:
        raise DivergedError(f"{DIVERGED_PREFIX}: the training loss is {value:.3g} at epoch {epoch}, step {step} "
                            f"(lr {lr:g}), above {LOSS_LIMIT:g}: it started near ln(classes) or below", HINT)


def check_outputs(outputs: np.ndarray, split: str, epoch: int) -> None:
    """Raise DivergedError when a head's outputs on `split` hold NaN/Inf or values beyond ±OUTPUT_LIMIT."""
    if not np.isfinite(outputs).all():
        bad = int((~np.isfinite(outputs)).any(axis=-1).sum())
        raise DivergedError(f"{DIVERGED_PREFIX}: the head's outputs on {bad} {split} utterance(s) are not finite "
                            f"after epoch {epoch}", HINT)
    absurd = (np.abs(outputs) > OUTPUT_LIMIT).any(axis=-1) if outputs.size else np.zeros(0, dtype=bool)
    if absurd.any():
        raise DivergedError(f"{DIVERGED_PREFIX}: the head's outputs on {int(absurd.sum())} {split} utterance(s) "
                            f"reach {float(np.abs(outputs).max()):.3g} after epoch {epoch}, beyond ±{OUTPUT_LIMIT:g}",
                            HINT)
