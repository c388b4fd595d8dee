"""Sample std and bootstrap intervals over pooled utterances, on cases whose answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from ser.training import metrics, statistics


def test_sample_std_uses_n_minus_one():
    assert statistics.sample_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.sqrt(5 / 3))  # population: sqrt(5/4)
    assert np.isnan(statistics.sample_std([0.7]))  # one value has no spread to estimate
    assert statistics.sample_std([0.5, np.nan, 0.7]) == pytest.approx(np.sqrt(0.02))


def categorical_table(truth, guess, labels=("angry", "happy", "sad")) -> pd.DataFrame:
    table = pd.DataFrame({"id": [f"u{i:04d}" for i in range(len(truth))],
                          "label": [labels[t] for t in truth], "prediction": [labels[g] for g in guess]})
    for label in labels:
        table[f"p_{label}"] = 1 / len(labels)
    return table


def test_wa_interval_is_scipy_s_bootstrap_of_the_mean_correctness():
    """1,000 utterances, 700 right: the pooled WA is 0.7 and its interval is exactly the percentile
    bootstrap of the mean of the 0/1 correctness (the same draws), ≈ 0.7 ± 1.96·√(0.21/1000)."""
    truth = np.arange(1000) % 3
    guess = np.where(np.arange(1000) % 10 < 7, truth, (truth + 1) % 3)
    intervals = statistics.pooled_intervals([categorical_table(truth, guess)])
    assert intervals["wa"]["pooled"] == pytest.approx(0.7)
    correct = (truth == guess).astype(float)
    expected = stats.bootstrap((correct,), np.mean, n_resamples=statistics.RESAMPLES, method="percentile",
                               confidence_level=0.95, random_state=np.random.default_rng(0)).confidence_interval
    assert intervals["wa"]["ci95"] == pytest.approx([expected.low, expected.high], abs=1e-12)
    half_width = 1.96 * np.sqrt(0.7 * 0.3 / 1000)
    assert intervals["wa"]["ci95"] == pytest.approx([0.7 - half_width, 0.7 + half_width], abs=0.006)


def test_the_bootstrap_is_scipy_s_percentile_bootstrap():
    # statistics computes scipy.stats.bootstrap's percentile intervals itself (its import cost half
    # a second); a three-metric statistic in batches must give scipy's numbers
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 500)
    predicted = np.where(rng.random((2, 500)) < 0.55, truth, rng.integers(0, 4, (2, 500)))  # two seeds
    statistic = statistics.categorical_statistic(truth, predicted, 4)
    point, low, high = statistics._bootstrap(statistic, 500)
    expected = stats.bootstrap((np.arange(500),), statistic, vectorized=True, n_resamples=statistics.RESAMPLES,
                               batch=statistics.BATCH, method="percentile", confidence_level=statistics.CONFIDENCE,
                               random_state=np.random.default_rng(0)).confidence_interval
    np.testing.assert_allclose(low, expected.low, rtol=0, atol=1e-12)
    np.testing.assert_allclose(high, expected.high, rtol=0, atol=1e-12)
    np.testing.assert_allclose(point, statistic(np.arange(500)))


def test_ua_and_macro_f1_intervals_surround_the_pooled_metrics():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 600)
    guess = np.where(rng.random(600) < 0.6, truth, rng.integers(0, 3, 600))
    intervals = statistics.pooled_intervals([categorical_table(truth, guess)])
    assert intervals["ua"]["pooled"] == pytest.approx(metrics.ua(truth, guess))
    assert intervals["macro_f1"]["pooled"] == pytest.approx(f1_score(truth, guess, average="macro"))
    for name in ("ua", "wa", "macro_f1"):
        low, high = intervals[name]["ci95"]
        assert low < intervals[name]["pooled"] < high and 0.03 < high - low < 0.12


def test_repeated_seeds_are_not_extra_samples():
    """Two identical seeds give the interval of one: utterances are the unit, not runs."""
    truth = np.arange(300) % 3
    guess = np.where(np.arange(300) % 4 == 0, (truth + 1) % 3, truth)
    one = statistics.pooled_intervals([categorical_table(truth, guess)])
    twice = statistics.pooled_intervals([categorical_table(truth, guess)] * 2)
    assert twice == one


def test_ccc_intervals_per_dimension_and_their_mean():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(400, 2))
    guess = truth + rng.normal(scale=0.8, size=(400, 2))
    table = pd.DataFrame({"id": [str(i) for i in range(400)], "arousal": truth[:, 0], "pred_arousal": guess[:, 0],
                          "valence": truth[:, 1], "pred_valence": guess[:, 1]})
    intervals = statistics.pooled_intervals([table])
    assert set(intervals) == {"ccc_arousal", "ccc_valence", "ccc_mean"}
    assert intervals["ccc_valence"]["pooled"] == pytest.approx(metrics.ccc(truth[:, 1], guess[:, 1]))
    both = [metrics.ccc(truth[:, k], guess[:, k]) for k in range(2)]
    assert intervals["ccc_mean"]["pooled"] == pytest.approx(np.mean(both))
    low, high = intervals["ccc_arousal"]["ci95"]
    assert low < intervals["ccc_arousal"]["pooled"] < high
