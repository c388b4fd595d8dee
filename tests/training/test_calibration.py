"""Temperature scaling (ser.training.calibration): the fit against scipy's bounded minimiser, the
argmax left alone, the calibration scores on cases worked by hand and the ECE noise floor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from ser.training.calibration import (brier, calibration_block, ece, ece_noise_floor, fit_temperature, nll, recalibrate,
                                      reliability, softmax)


def _logits(seed: int, scale: float, n: int = 300, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose true class gets a boost of `scale` (≫ 1: over-confident, ≪ 1: under-confident)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) * scale
    logits[np.arange(n), labels] += scale * rng.uniform(0, 2, n)
    return logits.astype(np.float32), labels


@pytest.mark.parametrize("seed, scale", [(0, 0.2), (1, 1.0), (2, 4.0), (3, 15.0)])
def test_temperature_matches_a_reference_fit_of_the_same_nll(seed, scale):
    logits, labels = _logits(seed, scale)
    reference = minimize_scalar(lambda t: nll(softmax(logits, t), labels), bounds=(0.05, 20.0), method="bounded",
                                options={"xatol": 1e-9})
    assert fit_temperature(logits, labels) == pytest.approx(reference.x, abs=1e-4)
    assert nll(softmax(logits, fit_temperature(logits, labels)), labels) <= nll(softmax(logits), labels) + 1e-12


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0, 17.0])
def test_temperature_never_changes_the_argmax(temperature):
    logits, labels = _logits(4, 3.0)
    before, after = softmax(logits), softmax(logits, temperature)
    np.testing.assert_array_equal(before.argmax(axis=1), after.argmax(axis=1))
    assert (before.argmax(axis=1) == labels).mean() == (after.argmax(axis=1) == labels).mean()


def test_over_confident_logits_get_a_temperature_above_one_and_a_lower_ece():
    logits, labels = _logits(5, 12.0)
    block = calibration_block(logits[:150], labels[:150], logits[150:], labels[150:])
    assert block["temperature"] > 1
    assert block["test_after"]["ece"] < block["test_before"]["ece"]
    assert block["dev_after"]["nll"] <= block["dev_before"]["nll"]


def test_scores_on_cases_worked_by_hand():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    y = np.array([0, 1, 1, 1])
    # bins of 1/15: 0.9 alone (right), 0.6 alone (wrong), 0.7 alone (right), 0.8 alone (right)
    assert ece(p, y) == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4)
    assert nll(p, y) == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    assert brier(p, y) == pytest.approx(np.mean([2 * 0.1**2, 2 * 0.6**2, 2 * 0.3**2, 2 * 0.2**2]))
    table = reliability(p, y)
    assert table["count"].sum() == 4 and np.nansum(table["accuracy"] * table["count"]) == 3


def test_recalibrating_stored_probabilities_equals_scaling_the_logits():
    logits, _ = _logits(6, 3.0)
    np.testing.assert_allclose(recalibrate(softmax(logits), 2.5), softmax(logits, 2.5), atol=1e-12)


def test_degenerate_inputs_keep_temperature_one():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0


def test_the_ece_noise_floor_is_what_a_perfectly_calibrated_model_scores():
    """Labels drawn from the probabilities themselves (a calibrated model by construction): their
    mean ECE over many draws matches the analytic floor; a floor without the √(2/π) factor, or
    without the per-bin square root, misses by far more than the tolerance."""
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(4, 0.7), size=500)  # (N, C), confidences spread over the bins
    draws = [ece(probabilities, np.array([rng.choice(4, p=p) for p in probabilities])) for _ in range(300)]
    assert ece_noise_floor(probabilities) == pytest.approx(np.mean(draws), rel=0.08)
    assert ece_noise_floor(np.tile(probabilities, (4, 1))) == pytest.approx(ece_noise_floor(probabilities) / 2)
