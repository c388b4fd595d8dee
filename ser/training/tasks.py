"""Learning tasks: what the targets are, the loss, and the metrics — everything the trainer
loop must not know. A task turns manifest rows into a target tensor, scores head outputs
against it, and lays out predictions.csv; the trainer only asks for `selection_metric`
(higher is better) and the `history_metrics` it logs per epoch.

`CategoricalTask` (emotion classes from the `label` column) is built here; `DimensionalTask`
(arousal/valence/dominance, 1 − CCC loss, dimensional.py) implements the same methods.
`fold_label_column` names the column folds stratify on (None: every row, no stratification).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ser.errors import ManifestError, UserInputError
from ser.training import metrics
from ser.training.dimensional import DimensionalTask


@dataclass(frozen=True)
class CategoricalTask:
    """Single-label classification over `labels` (sorted class names); cross-entropy loss."""

    labels: tuple[str, ...]
    label_smoothing: float = 0.0

    name = "categorical"
    fold_label_column = "label"
    selection_metric = "ua"
    history_metrics = ("ua", "wa")

    @classmethod
    def from_manifest(cls, df: pd.DataFrame, label_smoothing: float = 0.0) -> "CategoricalTask":
        """The class set of a manifest's `label` column."""
        if "label" not in df.columns or df["label"].isna().all():
            raise ManifestError("the manifest has no `label` values", "categorical training needs a label column")
        labels = tuple(sorted(str(label) for label in df["label"].dropna().unique()))
        if len(labels) < 2:
            raise ManifestError(f"the manifest has a single class ({labels[0]})", "training needs at least 2 classes")
        return cls(labels, label_smoothing)

    def configured(self, label_smoothing: float) -> "CategoricalTask":
        """This task with a run's loss settings (a recipe's label smoothing)."""
        return CategoricalTask(self.labels, label_smoothing)

    def fitted(self, train_targets: torch.Tensor) -> "CategoricalTask":
        """Classes need no statistics of the training fold: the task is unchanged."""
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def usable(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows this task can train or score on (those with a label)."""
        return df[df["label"].notna()]

    def targets(self, df: pd.DataFrame) -> torch.Tensor:
        """Class indices of the rows of `df`, in order → (N,) int64."""
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted(set(df["label"].astype(str)) - set(index))
        if unknown:
            raise ManifestError(f"labels not in this task's classes: {', '.join(unknown)}")
        return torch.tensor([index[str(label)] for label in df["label"]], dtype=torch.long)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (with the task's label smoothing) of logits (B, C) against (B,) classes."""
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict:
        """UA, WA, macro-F1 and the confusion matrix of logits (N, C) against classes (N,)."""
        predicted = outputs.argmax(axis=1)
        classes = list(range(self.num_outputs))
        return {
            "ua": metrics.ua(targets, predicted),
            "wa": metrics.wa(targets, predicted),
            "macro_f1": metrics.macro_f1(targets, predicted, labels=classes),
            "confusion": metrics.confusion(targets, predicted, labels=classes),
            "labels": list(self.labels),
        }

    def predictions(self, ids: list[str], outputs: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
        """predictions.csv rows: id, label, prediction, then one probability column per class."""
        logits = torch.from_numpy(outputs)
        probabilities = torch.softmax(logits, dim=1).numpy()  # (N, C)
        table = pd.DataFrame(
            {
                "id": ids,
                "label": [self.labels[t] for t in targets],
                "prediction": [self.labels[p] for p in outputs.argmax(axis=1)],
            }
        )
        for column, label in enumerate(self.labels):
            table[f"p_{label}"] = probabilities[:, column]
        return table

    def to_dict(self) -> dict:
        return {"name": self.name, "labels": list(self.labels), "label_smoothing": self.label_smoothing}

    @classmethod
    def from_dict(cls, data: dict) -> "CategoricalTask":
        return cls(tuple(data["labels"]), data["label_smoothing"])


Task = CategoricalTask | DimensionalTask
TASKS: dict[str, type[Task]] = {CategoricalTask.name: CategoricalTask, DimensionalTask.name: DimensionalTask}


def build_task(name: str, df: pd.DataFrame, label_smoothing: float = 0.0) -> Task:
    """The task called `name`, fitted to a manifest (its class set, its target columns)."""
    if name not in TASKS:
        raise UserInputError(f"unknown task {name!r}", f"choose one of: {', '.join(TASKS)}")
    return TASKS[name].from_manifest(df, label_smoothing=label_smoothing)


def task_from_dict(data: dict) -> Task:
    """Rebuild a task saved with `to_dict` (config.json)."""
    return TASKS[data["name"]].from_dict(data)
