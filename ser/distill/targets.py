"""The student's training targets: teacher predictions mixed with the ground truth, per utterance
and per dimension, by a weight that estimates how good the teacher is there (reference §5:
"use the teacher where it is good, ground truth otherwise").

    target[i, d] = w[i, d] · teacher[i, d] + (1 − w[i, d]) · truth[i, d],   0 ≤ w ≤ alpha

Teacher predictions on the student's training utterances are out-of-fold (cross-fitted): each
comes from a teacher that never saw that utterance, so its error there is honest.

Quality estimates (`--quality`):
- `none`: w = alpha everywhere — plain, unconditioned distillation (the ablation's baseline).
- `heldout`: per dimension, w_d = alpha · max(0, CCC_d(teacher, truth)) over the out-of-fold
  predictions: trust the teacher on a dimension as much as it agrees with held-out truth.
  For classes: alpha · max(0, κ) with κ the chance-corrected held-out accuracy.
- `mc-dropout` (default): per utterance and dimension, w = alpha · exp(−s / (τ · median s)), with
  s the spread of the teacher's prediction under MC dropout. It needs no labels, so it measures
  the teacher's confidence, not its luck; τ (`--temperature`) sets how fast trust decays.
- `agreement`: per utterance and dimension, w = alpha · exp(−|teacher − truth| / (τ · σ_d)),
  σ_d the spread of the truth: keep the teacher where it agrees with the label. For classes:
  alpha · p_teacher(true class)^(1/τ).
Categorical targets become soft labels: softmax(log p_teacher / T) (temperature T) mixed with
the one-hot truth.
"""

from __future__ import annotations

import numpy as np

from ser.errors import UserInputError
from ser.training import metrics

QUALITY_ESTIMATES = ("none", "heldout", "mc-dropout", "agreement")


def _check(estimate: str) -> None:
    if estimate not in QUALITY_ESTIMATES:
        raise UserInputError(f"unknown quality estimate {estimate!r}", f"choose one of: {', '.join(QUALITY_ESTIMATES)}")


def _spread_trust(spread: np.ndarray, temperature: float) -> np.ndarray:
    """exp(−s / (τ · median s)) per column of an (N, K) spread."""
    scale = np.median(spread, axis=0, keepdims=True).clip(min=1e-8)  # (1, K)
    return np.exp(-spread / (temperature * scale))


def dimensional_weights(
    estimate: str, teacher: np.ndarray, truth: np.ndarray, spread: np.ndarray | None = None,
    alpha: float = 0.5, temperature: float = 1.0,
) -> np.ndarray:
    """Per-utterance, per-dimension teacher weights in [0, alpha] for (N, K) regression targets."""
    _check(estimate)
    if not 0 <= alpha <= 1 or temperature <= 0:
        raise UserInputError("alpha must lie in [0, 1] and the temperature must be positive")
    if estimate == "none":
        trust = np.ones_like(truth, dtype=np.float64)
    elif estimate == "heldout":
        per_dim = [max(0.0, metrics.ccc(teacher[:, k], truth[:, k])) for k in range(truth.shape[1])]
        trust = np.broadcast_to(np.asarray(per_dim)[None, :], truth.shape).astype(np.float64)
    elif estimate == "agreement":
        sigma = truth.std(axis=0, keepdims=True).clip(min=1e-8)  # (1, K)
        trust = np.exp(-np.abs(teacher - truth) / (temperature * sigma))
    else:
        if spread is None:
            raise UserInputError("the mc-dropout estimate needs the teacher's MC-dropout spread")
        trust = _spread_trust(spread, temperature)
    return alpha * trust


def mix_dimensional(truth: np.ndarray, teacher: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """w · teacher + (1 − w) · truth, all (N, K) on the manifest's scale."""
    return weights * teacher + (1 - weights) * truth


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Teacher soft labels softmax(log p / T) of (N, C) probabilities."""
    logits = np.log(probabilities.clip(min=1e-12)) / temperature  # (N, C)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def categorical_weights(
    estimate: str, probabilities: np.ndarray, truth: np.ndarray, spread: np.ndarray | None = None,
    alpha: float = 0.5, temperature: float = 1.0,
) -> np.ndarray:
    """Per-utterance teacher weights (N, 1) in [0, alpha] for classes `truth` (N,) given the
    teacher's out-of-fold probabilities (N, C) and their MC-dropout spread (N, C)."""
    _check(estimate)
    n, classes = probabilities.shape
    if estimate == "none":
        trust = np.ones(n)
    elif estimate == "heldout":
        accuracy = float(np.mean(probabilities.argmax(axis=1) == truth))
        kappa = (accuracy - 1 / classes) / (1 - 1 / classes)
        trust = np.full(n, max(0.0, kappa))
    elif estimate == "agreement":
        trust = probabilities[np.arange(n), truth] ** (1 / temperature)
    else:
        if spread is None:
            raise UserInputError("the mc-dropout estimate needs the teacher's MC-dropout spread")
        trust = _spread_trust(spread.mean(axis=1, keepdims=True), temperature)[:, 0]
    return alpha * trust[:, None]


def mix_categorical(truth: np.ndarray, probabilities: np.ndarray, weights: np.ndarray, temperature: float) -> np.ndarray:
    """Soft labels (N, C): w · softmax(log p / T) + (1 − w) · one-hot(truth)."""
    one_hot = np.eye(probabilities.shape[1])[truth]  # (N, C)
    return weights * soften(probabilities, temperature) + (1 - weights) * one_hot
