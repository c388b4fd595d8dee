"""Dimensional emotion (arousal, valence, dominance): 1 − CCC loss and CCC metrics (reference §1).

Targets stay on the manifest's scale everywhere (targets tensor, predictions.csv, metrics); the
task z-normalises them inside the loss with statistics fitted on the fold's training rows only
(`fitted`), and maps head outputs back to the manifest's scale before scoring. CCC is invariant
to that joint affine map, MSE is reported on the manifest's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ser.errors import ManifestError, UserInputError
from ser.training import metrics

DIMENSIONS = ("arousal", "valence", "dominance")


def ccc_per_dimension(outputs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batch CCC of every column: (B, K), (B, K) → (K,), population variances (reference §1)."""
    mean_out, mean_tgt = outputs.mean(dim=0), targets.mean(dim=0)  # (K,)
    centred_out, centred_tgt = outputs - mean_out, targets - mean_tgt  # (B, K)
    covariance = (centred_out * centred_tgt).mean(dim=0)  # (K,)
    denominator = centred_out.pow(2).mean(dim=0) + centred_tgt.pow(2).mean(dim=0) + (mean_out - mean_tgt).pow(2)
    return 2 * covariance / (denominator + eps)


def ccc_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Training loss 1 − CCC, averaged over dimensions, on one batch (B, K) (batches ≥ 32 advised)."""
    return 1 - ccc_per_dimension(outputs, targets).mean()


def dimensional_metrics(predicted: np.ndarray, truth: np.ndarray, dimensions: tuple[str, ...] = DIMENSIONS) -> dict:
    """ccc_<dim> per dimension, ccc_mean, and mse (mean over dimensions) of (N, K) arrays."""
    scores = {f"ccc_{name}": metrics.ccc(predicted[:, k], truth[:, k]) for k, name in enumerate(dimensions)}
    scores["ccc_mean"] = float(np.mean(list(scores.values())))
    scores["mse"] = float(np.mean((predicted - truth) ** 2))
    for k, name in enumerate(dimensions):
        scores[f"mse_{name}"] = float(np.mean((predicted[:, k] - truth[:, k]) ** 2))
    return scores


@dataclass(frozen=True)
class DimensionalTask:
    """Regression of the manifest's arousal/valence/dominance columns; 1 − CCC loss.

    `mean`/`std` are the z-normalisation statistics of the fold's training targets (set by
    `fitted`); before fitting they are 0/1 (no normalisation).
    """

    dimensions: tuple[str, ...] = DIMENSIONS
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    name = "dimensional"
    fold_label_column = None  # regression targets: folds take every row, unstratified
    selection_metric = "ccc_mean"
    history_metrics = ("ccc_mean", "ccc_arousal", "ccc_valence", "ccc_dominance")

    @classmethod
    def from_manifest(cls, df: pd.DataFrame, label_smoothing: float = 0.0) -> "DimensionalTask":
        """Check that the manifest has the three dimension columns (label smoothing does not apply)."""
        missing = [name for name in DIMENSIONS if name not in df.columns or df[name].isna().all()]
        if missing:
            raise ManifestError(
                f"the manifest has no {', '.join(missing)} values",
                "dimensional training needs arousal, valence and dominance columns (e.g. `ser prepare synthetic`)",
            )
        return cls()

    def configured(self, label_smoothing: float) -> "DimensionalTask":
        """Recipes' label smoothing has no meaning for regression: the task is unchanged."""
        return self

    def fitted(self, train_targets: torch.Tensor) -> "DimensionalTask":
        """This task with z-normalisation statistics of one fold's training targets (N, K)."""
        values = train_targets.detach().double().cpu()
        if len(values) < 2:
            raise UserInputError("dimensional training needs at least 2 training utterances")
        mean = values.mean(dim=0)  # (K,)
        std = values.std(dim=0, unbiased=False).clamp_min(1e-6)  # (K,)
        return DimensionalTask(self.dimensions, tuple(mean.tolist()), tuple(std.tolist()))

    @property
    def num_outputs(self) -> int:
        return len(self.dimensions)

    def usable(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows with a value in every dimension column."""
        return df[df[list(self.dimensions)].notna().all(axis=1)]

    def targets(self, df: pd.DataFrame) -> torch.Tensor:
        """Dimension values of the rows of `df` on the manifest's scale → (N, K) float32."""
        values = df[list(self.dimensions)].to_numpy(dtype=np.float32, copy=True)  # writable
        return torch.from_numpy(values)

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        """Manifest scale → z-scores of the training fold, (…, K)."""
        mean = torch.tensor(self.mean, dtype=values.dtype, device=values.device)
        std = torch.tensor(self.std, dtype=values.dtype, device=values.device)
        return (values - mean) / std

    def denormalise(self, outputs: np.ndarray) -> np.ndarray:
        """Head outputs (z-scores) → the manifest's scale, (N, K)."""
        return outputs * np.asarray(self.std) + np.asarray(self.mean)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """1 − mean CCC of head outputs (B, K) against the z-normalised targets (B, K)."""
        return ccc_loss(outputs, self.normalise(targets.to(outputs.dtype)))

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict:
        """CCC per dimension, their mean and MSE, on the manifest's scale."""
        return dimensional_metrics(self.denormalise(outputs), np.asarray(targets, dtype=np.float64), self.dimensions)

    def predictions(self, ids: list[str], outputs: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
        """predictions.csv rows: id, then <dim> (truth) and pred_<dim> per dimension."""
        predicted = self.denormalise(outputs)
        table = pd.DataFrame({"id": ids})
        for k, name in enumerate(self.dimensions):
            table[name] = np.asarray(targets)[:, k]
            table[f"pred_{name}"] = predicted[:, k]
        return table

    def to_dict(self) -> dict:
        return {"name": self.name, "dimensions": list(self.dimensions), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "DimensionalTask":
        return cls(tuple(data["dimensions"]), tuple(data["mean"]), tuple(data["std"]))
