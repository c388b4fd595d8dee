"""The student's target mixing and the teacher-quality estimates."""

import math

import numpy as np
import pytest

from ser.errors import UserInputError
from ser.distill.targets import (
    categorical_weights,
    dimensional_weights,
    mix_categorical,
    mix_dimensional,
    soften,
)


@pytest.fixture
def regression():
    rng = np.random.default_rng(0)
    truth = rng.normal(3, 1, size=(300, 3))
    teacher = truth.copy()
    teacher[:, 0] += rng.normal(scale=0.1, size=300)  # good on dimension 0
    teacher[:, 1] = rng.normal(3, 1, size=300)  # useless on dimension 1
    teacher[:, 2] = 2 * truth[:, 2].mean() - truth[:, 2]  # anti-correlated on dimension 2
    spread = np.abs(rng.normal(0.2, 0.05, size=(300, 3)))
    return truth, teacher, spread


def test_none_is_a_fixed_alpha(regression):
    truth, teacher, spread = regression
    weights = dimensional_weights("none", teacher, truth, alpha=0.3)
    assert np.all(weights == 0.3)
    mixed = mix_dimensional(truth, teacher, weights)
    assert np.allclose(mixed, 0.3 * teacher + 0.7 * truth)


def test_heldout_trusts_each_dimension_by_its_heldout_ccc(regression):
    truth, teacher, _ = regression
    weights = dimensional_weights("heldout", teacher, truth, alpha=1.0)
    assert weights.shape == truth.shape
    assert weights[0, 0] > 0.95  # near-perfect teacher dimension
    assert weights[0, 1] < 0.2  # uninformative dimension
    assert weights[0, 2] == 0.0  # anti-correlated: never trusted
    assert np.all(weights == weights[0])  # one weight per dimension


def test_agreement_is_per_utterance_and_decays_with_error(regression):
    truth, teacher, _ = regression
    weights = dimensional_weights("agreement", teacher, truth, alpha=0.8, temperature=0.5)
    error = np.abs(teacher - truth)
    assert weights.max() <= 0.8 and weights.min() >= 0
    column = 1
    order = np.argsort(error[:, column])
    assert np.all(np.diff(weights[order, column]) <= 1e-12)  # larger error → smaller weight
    assert weights[:, 0].mean() > weights[:, 1].mean()


def test_mc_dropout_trusts_confident_predictions_more(regression):
    truth, teacher, spread = regression
    spread[:10, 1] = 5.0  # the teacher is unsure about these
    weights = dimensional_weights("mc-dropout", teacher, truth, spread=spread, alpha=1.0)
    assert weights[:10, 1].max() < 0.01
    assert weights[10:, 1].mean() > 0.2
    with pytest.raises(UserInputError, match="spread"):
        dimensional_weights("mc-dropout", teacher, truth)


def test_unknown_estimate_and_bad_alpha_are_refused(regression):
    truth, teacher, _ = regression
    with pytest.raises(UserInputError, match="quality estimate"):
        dimensional_weights("oracle", teacher, truth)
    with pytest.raises(UserInputError, match="alpha"):
        dimensional_weights("none", teacher, truth, alpha=1.5)


def test_soft_labels_with_temperature_and_mixing():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert np.allclose(soften(probabilities, 1.0), probabilities)
    flat = soften(probabilities, 4.0)
    assert flat[0, 0] < 0.7 and flat[0, 0] > flat[0, 1]  # softer, same order
    assert np.allclose(flat.sum(axis=1), 1)
    truth = np.array([0, 1])
    weights = categorical_weights("agreement", probabilities, truth, alpha=1.0)
    assert weights[:, 0] == pytest.approx([0.7, 0.1])  # p(true class)
    mixed = mix_categorical(truth, probabilities, weights, temperature=1.0)
    assert np.allclose(mixed.sum(axis=1), 1)
    assert mixed[0] == pytest.approx(0.7 * probabilities[0] + 0.3 * np.array([1, 0, 0]))
    kappa = categorical_weights("heldout", probabilities, truth, alpha=1.0)
    assert np.all(kappa == kappa[0]) and kappa[0, 0] == pytest.approx(0.25)  # accuracy 0.5, chance 1/3


def test_a_non_positive_temperature_is_named_with_its_value():
    from ser.distill.student import DistillConfig

    for settings, message in ((DistillConfig(temperature=0.0), "--temperature must be above 0, not 0"),
                              (DistillConfig(soft_temperature=math.nan), "--soft-temperature must be above 0, not nan"),
                              # both said "cross-fitting needs >= 2 parts and MC dropout >= 2 samples"
                              (DistillConfig(crossfit_parts=1), "--crossfit-parts must be 2 or more, not 1"),
                              (DistillConfig(mc_samples=0), "--mc-samples must be 2 or more, not 0")):
        with pytest.raises(UserInputError) as refused:
            settings.validate()
        assert refused.value.message == message
    DistillConfig().validate()
