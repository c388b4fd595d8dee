"""Divergence: a non-finite training loss or head output ends the run with `DivergedError`.

No metric is ever computed from NaN/Inf outputs (they would score as a constant prediction, e.g.
UA 0.25 on four classes, and look like a result). The error message starts with
`DIVERGED_PREFIX`, which is how run tables tell a diverged run from a failed one.
"""

from __future__ import annotations

import math

import numpy as np

from ser.errors import DivergedError

DIVERGED_PREFIX = "training diverged"
HINT = "lower --lr (or add gradient clipping); a rerun with the same settings diverges again"


def check_loss(value: float, epoch: int, step: int, lr: float) -> None:
    """Raise DivergedError when the training loss of a step is NaN or infinite."""
    if not math.isfinite(value):
        raise DivergedError(f"{DIVERGED_PREFIX}: the training loss is {value} at epoch {epoch}, step {step} "
                            f"(lr {lr:g})", HINT)


def check_outputs(outputs: np.ndarray, split: str, epoch: int) -> None:
    """Raise DivergedError when a head's outputs on `split` hold NaN or infinite values."""
    if not np.isfinite(outputs).all():
        bad = int((~np.isfinite(outputs)).any(axis=-1).sum())
        raise DivergedError(f"{DIVERGED_PREFIX}: the head's outputs on {bad} {split} utterance(s) are not finite "
                            f"after epoch {epoch}", HINT)
