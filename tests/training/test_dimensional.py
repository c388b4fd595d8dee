"""DimensionalTask: CCC loss and metrics against a NumPy reference, per-fold normalisation."""

import numpy as np
import pandas as pd
import pytest
import torch

from ser.errors import ManifestError
from ser.training.dimensional import DimensionalTask, ccc_loss, ccc_per_dimension, dimensional_metrics
from ser.training.metrics import ccc


def numpy_ccc(x, y):
    """Reference: Lin's concordance correlation with population moments, written out longhand."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    mx, my = x.sum() / n, y.sum() / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y)) / n
    sxx = sum((a - mx) ** 2 for a in x) / n
    syy = sum((b - my) ** 2 for b in y) / n
    return 2 * sxy / (sxx + syy + (mx - my) ** 2)


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    return x, 0.6 * x + rng.normal(scale=0.8, size=200) + 0.3


def test_ccc_matches_numpy_reference(pair):
    x, y = pair
    expected = numpy_ccc(x, y)
    assert ccc(x, y) == pytest.approx(expected, abs=1e-12)
    batch = torch.tensor(np.stack([x, y], axis=1))  # (N, 2)
    torch_value = ccc_per_dimension(batch[:, :1], batch[:, 1:])
    assert torch_value.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "transform, expected",
    [
        (lambda x: x, 1.0),  # perfect
        (lambda x: -x, -1.0),  # anti-correlated, same mean 0 and scale
    ],
)
def test_ccc_known_cases(transform, expected):
    x = np.linspace(-1, 1, 101)
    assert ccc(x, transform(x)) == pytest.approx(expected, abs=1e-12)
    assert ccc_per_dimension(torch.tensor(x)[:, None], torch.tensor(transform(x))[:, None]).item() == pytest.approx(
        expected, abs=1e-6
    )


def test_ccc_penalises_shift_and_scale_that_correlation_ignores():
    x = np.linspace(-1, 1, 101)  # mean 0, population variance v
    v = x.var()
    shifted = x + 1.0  # 2v / (2v + 1)
    assert ccc(x, shifted) == pytest.approx(2 * v / (2 * v + 1.0), abs=1e-12)
    scaled = 2 * x  # 2·2v / (v + 4v) = 0.8
    assert ccc(x, scaled) == pytest.approx(0.8, abs=1e-12)
    assert np.corrcoef(x, scaled)[0, 1] == pytest.approx(1.0)
    t = torch.tensor(np.stack([shifted, scaled], axis=1))
    reference = torch.tensor(np.stack([x, x], axis=1))
    assert ccc_per_dimension(t, reference).numpy() == pytest.approx([2 * v / (2 * v + 1), 0.8], abs=1e-6)


def test_ccc_loss_is_one_minus_mean_ccc_and_has_gradients(pair):
    x, y = pair
    outputs = torch.tensor(np.stack([x, y, -x], axis=1), requires_grad=True)
    targets = torch.tensor(np.stack([x, x, x], axis=1))
    loss = ccc_loss(outputs, targets)
    expected = 1 - np.mean([1.0, numpy_ccc(y, x), numpy_ccc(-x, x)])
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert outputs.grad is not None and torch.isfinite(outputs.grad).all()
    assert outputs.grad[:, 0].abs().max() < 1e-6  # a perfect column is at its optimum


def manifest(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"u{i}" for i in range(n)], "path": [f"u{i}.wav" for i in range(n)],
        "arousal": rng.uniform(1, 5, n), "valence": rng.uniform(1, 5, n), "dominance": rng.uniform(1, 5, n),
    })


def test_task_normalises_with_training_rows_only_and_reports_manifest_scale():
    df = manifest()
    task = DimensionalTask.from_manifest(df)
    targets = task.targets(df)  # (N, 3)
    train = targets[:30]
    fitted = task.fitted(train)
    assert fitted.mean == pytest.approx(train.double().mean(0).tolist())
    assert fitted.std == pytest.approx(train.double().std(0, unbiased=False).tolist(), rel=1e-6)
    assert fitted.mean != pytest.approx(targets.double().mean(0).tolist())  # test rows did not leak in
    # a head that outputs the z-scores exactly: zero loss, CCC 1, MSE 0 on the manifest's scale
    z = fitted.normalise(targets)
    assert fitted.loss(z, targets).item() == pytest.approx(0.0, abs=1e-5)
    scores = fitted.evaluate(z.numpy(), targets.numpy())
    assert scores["ccc_arousal"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ccc_mean"] == pytest.approx(1.0, abs=1e-6)
    assert scores["mse"] == pytest.approx(0.0, abs=1e-8)
    table = fitted.predictions(list(df["id"]), z.numpy(), targets.numpy())
    assert np.allclose(table["pred_valence"], df["valence"], atol=1e-4)
    assert DimensionalTask.from_dict(fitted.to_dict()) == fitted


def test_metrics_names_and_mse():
    truth = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]])
    predicted = truth + np.array([0.0, 1.0, 0.0])
    scores = dimensional_metrics(predicted, truth)
    assert {"ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean", "mse"} <= set(scores)
    assert scores["mse"] == pytest.approx(1 / 3)
    assert scores["ccc_valence"] < 1 and scores["ccc_arousal"] == pytest.approx(1.0)


def test_manifest_without_dimensions_is_refused():
    df = manifest().drop(columns=["valence"])
    with pytest.raises(ManifestError, match="valence"):
        DimensionalTask.from_manifest(df)
