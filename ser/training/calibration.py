"""Temperature scaling (Guo et al., 2017): one scalar T per fold, fitted on the dev split's logits
after training, so that softmax(logits / T) gives probabilities that match how often the model is
right. T never changes the argmax, so accuracy is untouched.

Pure numpy: `fit_temperature(logits, labels)`, `fold_calibration` (metrics.json's block; run_dir writes
calibration.json), and the scores that measure calibration
(`ece` with 15 equal-width bins on the max probability, `nll`, `brier`).
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))  # T in [0.05, 20]: wider than any sane model needs


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) over the last axis, in float64 → (N, C)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.clip(p, 1e-300, None)).mean())


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance between the probability vector and the one-hot truth (sum over classes)."""
    p = np.asarray(probabilities, dtype=np.float64)
    onehot = np.eye(p.shape[1])[np.asarray(labels, dtype=np.int64)]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per equal-width bin of the max probability: count, mean confidence, accuracy (NaN when empty)."""
    p = np.asarray(probabilities, dtype=np.float64)
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # bin k holds (k/B, (k+1)/B]
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, minlength=bins) / count
        accuracy = np.bincount(which, correct, minlength=bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy,
            "edges": np.linspace(0.0, 1.0, bins + 1)}


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: Σ_bins (n_b / N) |accuracy_b − confidence_b| over the max probability."""
    table = reliability(probabilities, labels, bins)
    used = table["count"] > 0
    gaps = np.abs(table["accuracy"][used] - table["confidence"][used])
    return float((table["count"][used] * gaps).sum() / max(table["count"].sum(), 1.0))


def ece_noise_floor(probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """The ECE that a perfectly calibrated model with these confidences still scores on this many
    clips, in expectation: a bin's accuracy is then a mean of Bernoulli(confidence) draws, and
    E|accuracy_b − confidence_b| ≈ √(2/π)·√(Σ_b c(1 − c)) / n_b (normal approximation). An ECE
    near this figure is sampling noise, not miscalibration."""
    confidence = np.asarray(probabilities, dtype=np.float64).max(axis=1)  # (N,)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    variance = np.bincount(which, confidence * (1.0 - confidence), minlength=bins)  # Σ c(1 − c) per bin
    return float(np.sqrt(2.0 / np.pi) * np.sqrt(variance).sum() / max(len(confidence), 1))


def pooled_calibration(folds: list[tuple[np.ndarray, np.ndarray, float]]) -> dict:
    """Test calibration over every fold's clips at once, from (probabilities at T = 1 (N, C),
    class indices (N,), the fold's temperature) per fold: ECE before and after, and the ECE
    noise floor of the calibrated probabilities (each clip is tested once across the folds, so the
    pooled figures rest on the whole corpus rather than on one fold's few hundred clips)."""
    before = np.concatenate([np.asarray(p, dtype=np.float64) for p, _, _ in folds])
    after = np.concatenate([recalibrate(p, temperature) for p, _, temperature in folds])
    labels = np.concatenate([np.asarray(y, dtype=np.int64) for _, y, _ in folds])
    return {"clips": int(len(labels)), "ece_before": ece(before, labels), "ece_after": ece(after, labels),
            "ece_noise_floor_after": ece_noise_floor(after)}


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{"ece", "nll", "brier"} of class probabilities against class indices."""
    return {"ece": ece(probabilities, labels), "nll": nll(probabilities, labels), "brier": brier(probabilities, labels)}


def _nll_and_derivatives(log_t: float, logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """NLL of softmax(logits · e^{−s}) and its first two derivatives in s = log T."""
    a = np.exp(-log_t)
    z = logits * a  # (N, C)
    z_max = z.max(axis=1, keepdims=True)
    p = np.exp(z - z_max)
    p /= p.sum(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - z_max).sum(axis=1)) + z_max[:, 0]
    true = logits[np.arange(len(labels)), labels]
    value = float((log_norm - a * true).mean())
    mean_logit = (p * logits).sum(axis=1)  # E_p[l]
    var_logit = (p * logits ** 2).sum(axis=1) - mean_logit ** 2  # Var_p[l]
    # d/da = E[l] − l_y ; d²/da² = Var[l] ; da/ds = −a
    first_a, second_a = (mean_logit - true).mean(), var_logit.mean()
    first = -a * first_a
    second = a * a * second_a + a * first_a
    return value, float(first), float(second)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 100, tolerance: float = 1e-10) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on (logits, labels).

    Safeguarded Newton on s = log T inside LOG_T_BOUNDS: a Newton step when the curvature is
    positive and the step stays inside the bracket that holds the minimum, else bisection."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0 or logits.shape[1] < 2:
        return 1.0
    low, high = LOG_T_BOUNDS
    s = 0.0
    for _ in range(iterations):
        _, first, second = _nll_and_derivatives(s, logits, labels)
        if abs(first) < tolerance:
            break
        if first > 0:
            high = s
        else:
            low = s
        step = s - first / second if second > 0 else np.nan
        s_next = step if low < step < high else 0.5 * (low + high)
        if abs(s_next - s) < 1e-12:
            break
        s = s_next
    return float(np.exp(np.clip(s, *LOG_T_BOUNDS)))


def calibration_block(dev_logits: np.ndarray, dev_labels: np.ndarray,
                      test_logits: np.ndarray | None = None, test_labels: np.ndarray | None = None) -> dict:
    """metrics.json's "calibration": the temperature fitted on dev, with dev (and test) ECE, NLL
    and Brier before (T = 1) and after."""
    temperature = fit_temperature(dev_logits, dev_labels)
    block: dict = {"temperature": temperature, "fitted_on": "dev", "ece_bins": ECE_BINS,
                   "dev_before": scores(softmax(dev_logits), dev_labels),
                   "dev_after": scores(softmax(dev_logits, temperature), dev_labels)}
    if test_logits is not None and len(test_logits):
        block["test_before"] = scores(softmax(test_logits), test_labels)
        block["test_after"] = scores(softmax(test_logits, temperature), test_labels)
    return block


def recalibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): probabilities written at T = 1 (predictions.csv) → calibrated ones."""
    return softmax(np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, None)), temperature)


def _classes(targets: np.ndarray) -> np.ndarray:
    """Class indices (N,) from class indices or from (N, C) soft-label / one-hot rows (their argmax)."""
    targets = np.asarray(targets)
    return targets.argmax(axis=1) if targets.ndim == 2 else targets.astype(np.int64)


def fold_calibration(dev_logits: np.ndarray, dev_targets: np.ndarray,
                     test_logits: np.ndarray | None = None, test_targets: np.ndarray | None = None) -> dict:
    """metrics.json's "calibration" block of a fold, from its outputs and targets (class indices, or
    soft-label / one-hot rows); run_dir.write_calibration keeps its temperature beside the model."""
    dev_labels, test_labels = (None if y is None else _classes(y) for y in (dev_targets, test_targets))
    return calibration_block(dev_logits, dev_labels, test_logits, test_labels)
