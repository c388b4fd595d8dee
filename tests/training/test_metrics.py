"""Metrics (reference §1) against hand-computed cases and a direct numpy reference."""

import numpy as np
import pytest

from ser.training import metrics


def test_ua_is_mean_per_class_recall_and_wa_is_accuracy():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    guess = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    # recalls: class 0 = 3/4, class 1 = 1/2, class 2 = 2/2
    assert metrics.ua(truth, guess) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert metrics.wa(truth, guess) == pytest.approx(6 / 8)


def test_ua_differs_from_wa_on_imbalanced_data():
    truth = np.array([0] * 9 + [1])
    majority = np.zeros(10, dtype=int)
    assert metrics.wa(truth, majority) == pytest.approx(0.9)
    assert metrics.ua(truth, majority) == pytest.approx(0.5)


def test_macro_f1_counts_never_predicted_classes_as_zero():
    truth = np.array([0, 0, 1, 1])
    guess = np.array([0, 0, 0, 0])
    # class 0: precision 1/2, recall 1 → F1 2/3; class 1: F1 0
    assert metrics.macro_f1(truth, guess) == pytest.approx(1 / 3)
    # a class absent from both arrays still counts when listed
    assert metrics.macro_f1(truth, guess, labels=[0, 1, 2]) == pytest.approx(2 / 9)


def test_confusion_rows_are_truth_columns_are_predictions():
    truth = np.array([0, 0, 1, 2])
    guess = np.array([0, 1, 1, 1])
    assert metrics.confusion(truth, guess, labels=[0, 1, 2]) == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def _reference_ccc(x, y):
    mx, my = np.mean(x), np.mean(y)
    vx, vy = np.mean((x - mx) ** 2), np.mean((y - my) ** 2)
    cov = np.mean((x - mx) * (y - my))
    return 2 * cov / (vx + vy + (mx - my) ** 2)


def test_ccc_known_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert metrics.ccc(x, x) == pytest.approx(1.0)
    assert metrics.ccc(x, 6 - x) == pytest.approx(-1.0)  # mirrored about the shared mean
    # shifted by 1: cov = var = 2, mean gap 1 → 4 / (2 + 2 + 1)
    assert metrics.ccc(x, x + 1) == pytest.approx(4 / 5)
    # scaled by 2: cov = 4, var 2 and 8, mean gap 3 → 8 / (2 + 8 + 9)
    assert metrics.ccc(x, 2 * x) == pytest.approx(8 / 19)
    assert metrics.ccc(x, np.full(5, 3.0)) == pytest.approx(0.0)


def test_ccc_matches_numpy_reference_with_population_variances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.6 * x + rng.normal(scale=0.5, size=200) + 0.3
    expected = _reference_ccc(x, y)
    assert metrics.ccc(x, y) == pytest.approx(expected, rel=1e-12)
    # not the Pearson correlation (CCC also penalises the mean gap)
    assert metrics.ccc(x, y) < np.corrcoef(x, y)[0, 1]


def test_ccc_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        metrics.ccc(np.zeros(3), np.zeros(4))


def test_folds_that_lack_a_class_score_without_warnings():
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    truth = np.array([0, 0, 1, 1, 1])
    guess = np.array([0, 2, 1, 1, 3])  # predicts classes 2 and 3, absent from this fold's truth
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = metrics.ua(truth, guess)
        f1 = metrics.macro_f1(truth, guess, labels=[0, 1, 2, 3])
        metrics.confusion(truth, guess, labels=[0, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert score == pytest.approx(balanced_accuracy_score(truth, guess)) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert 0 < f1 < 1


def test_classification_metrics_equal_scikit_learns_on_random_folds():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    rng = np.random.default_rng(0)
    for case in range(300):
        classes = int(rng.integers(2, 7))
        size = int(rng.integers(1, 40))
        truth = rng.integers(0, classes - (case % 3 == 0), size)  # sometimes a class is missing from truth
        guess = rng.integers(0, classes, size) if case % 5 else truth.copy()
        labels = list(range(classes))
        present = np.unique(truth)
        assert metrics.ua(truth, guess) == pytest.approx(recall_score(truth, guess, labels=present, average="macro",
                                                                      zero_division=0))
        assert metrics.wa(truth, guess) == pytest.approx(accuracy_score(truth, guess))
        assert metrics.macro_f1(truth, guess) == pytest.approx(f1_score(truth, guess, average="macro", zero_division=0))
        assert metrics.macro_f1(truth, guess, labels=labels) == pytest.approx(
            f1_score(truth, guess, labels=labels, average="macro", zero_division=0))
        assert metrics.confusion(truth, guess, labels) == confusion_matrix(truth, guess, labels=labels).tolist()
