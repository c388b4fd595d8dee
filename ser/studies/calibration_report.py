"""The report's calibration section: per configuration, the temperature fitted on dev, test ECE,
NLL and Brier before and after it (metrics.json's "calibration"), a reliability diagram, and
selective prediction (accuracy of the most confident k% of the test utterances, pooled across folds).

Test probabilities come from predictions.csv (the uncalibrated softmax), rescaled with each fold's
temperature: softmax(log p / T) = softmax(logits / T).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ser.data.atomic_files import read_json_or_none
from ser.studies import figures
from ser.training.calibration import ece, ece_noise_floor, recalibrate, reliability
from ser.training.statistics import class_probabilities, read_fold_predictions

COVERAGES = tuple(range(100, 0, -10))  # % of test utterances kept, most confident first
SCORES = ("ece", "nll", "brier")


@dataclass
class ConfigurationCalibration:
    """One configuration's calibration numbers: per run × fold blocks and pooled test predictions."""

    blocks: list[dict] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)  # calibrated, per fold
    raw: list[np.ndarray] = field(default_factory=list)  # T = 1, per fold
    labels: list[np.ndarray] = field(default_factory=list)

    def mean(self, part: str, score: str) -> tuple[float, float]:
        values = [block[part][score] for block in self.blocks if part in block]
        return (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0) if values \
            else (np.nan, np.nan)

    def pooled(self, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.probabilities if calibrated else self.raw), np.concatenate(self.labels)


def selective_accuracy(probabilities: np.ndarray, labels: np.ndarray, coverages=COVERAGES) -> dict[int, float]:
    """{coverage %: accuracy of the ceil(k% · N) most confident predictions} (ties keep input order)."""
    order = np.argsort(-probabilities.max(axis=1), kind="stable")
    correct = (probabilities.argmax(axis=1) == labels)[order]
    return {k: float(correct[: max(1, int(np.ceil(k / 100 * len(correct))))].mean()) for k in coverages}


def _fold_predictions(fold_dir: Path, temperature: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        tables = read_fold_predictions([fold_dir])  # labels read as text, as every predictions reader does
    except (OSError, ValueError):
        return None
    found = class_probabilities(tables[0]) if tables else None
    if found is None:
        return None
    raw, labels = found
    return recalibrate(raw, temperature), raw, labels


def collect(labelled: pd.DataFrame, root: Path) -> dict[str, ConfigurationCalibration]:
    """{configuration: its calibration} for the configurations whose runs were calibrated."""
    found: dict[str, ConfigurationCalibration] = {}
    for _, row in labelled.iterrows():
        fold_dir = root / row["run_dir"]
        block = (read_json_or_none(fold_dir / "metrics.json") or {}).get("calibration")
        if not isinstance(block, dict) or "temperature" not in block:
            continue
        entry = found.setdefault(row["config"], ConfigurationCalibration())
        entry.blocks.append(block)
        predictions = _fold_predictions(fold_dir, float(block["temperature"]))
        if predictions is not None:
            for bucket, values in zip((entry.probabilities, entry.raw, entry.labels), predictions):
                bucket.append(values)
    return found


def _pooled_ece_cell(entry: ConfigurationCalibration) -> str:
    """"before → after (floor)" of the pooled test predictions; "—" without them."""
    if not entry.probabilities:
        return "—"
    calibrated, labels = entry.pooled()
    raw, _ = entry.pooled(calibrated=False)
    return f"{ece(raw, labels):.3f} → {ece(calibrated, labels):.3f} ({ece_noise_floor(calibrated):.3f})"


def ece_cells(found: dict[str, ConfigurationCalibration]) -> dict[str, str]:
    """{configuration: "ECE after (before)"} for the all-configurations table."""
    cells = {}
    for name, entry in found.items():
        after, _ = entry.mean("test_after", "ece")
        before, _ = entry.mean("test_before", "ece")
        cells[name] = "—" if np.isnan(after) else f"{after:.3f} ({before:.3f})"
    return cells


def section(found: dict[str, ConfigurationCalibration], figure_dir: Path, suffix: str,
            markdown_table, slug) -> tuple[list[str], list[Path]]:
    """(Markdown parts, figures written) of the report's calibration section; empty without calibrated runs."""
    if not found:
        return [], []
    header = ["configuration", "T", *(f"{s.upper()} before → after" for s in SCORES)]
    rows = []
    for name, entry in found.items():
        temperatures = [block["temperature"] for block in entry.blocks]
        cells = []
        for score in SCORES:
            before, after = entry.mean("test_before", score)[0], entry.mean("test_after", score)[0]
            cells.append("—" if np.isnan(after) else f"{before:.3f} → {after:.3f}")
        rows.append([name, f"{np.mean(temperatures):.2f}", *cells, _pooled_ece_cell(entry)])
    header.append("pooled ECE before → after (noise floor)")
    parts = ["## Calibration (temperature scaling, fitted on dev)",
             "Each fold divides its logits by a temperature T fitted on its dev split after training (the argmax, "
             "hence UA/WA, is unchanged). Test ECE (15 equal-width bins of the top probability), NLL and Brier "
             "score, mean over folds and seeds, before → after. The pooled ECE scores every fold's test "
             "utterances at once; its noise floor is the ECE that a perfectly calibrated model with the same "
             "confidences would still score on that many utterances: an ECE near it is sampling noise.",
             markdown_table(header, rows)]
    curves, written = {}, []
    for name, entry in found.items():
        if not entry.probabilities:
            continue
        calibrated, labels = entry.pooled()
        raw, _ = entry.pooled(calibrated=False)
        curves[name] = selective_accuracy(calibrated, labels)
        tables = {"uncalibrated": reliability(raw, labels), "calibrated": reliability(calibrated, labels)}
        written.append(figures.reliability_figure(tables, name, figure_dir / f"reliability_{slug(name)}.{suffix}"))
    if curves:
        header = ["configuration", *(f"{k}%" for k in COVERAGES)]
        rows = [[name, *(f"{100 * curve[k]:.1f}" for k in COVERAGES)] for name, curve in curves.items()]
        parts += ["### Accuracy against coverage (selective prediction)",
                  "Test utterances pooled across folds, sorted by calibrated confidence; a cell is the accuracy (%) "
                  "of the most confident k% (what `ser predict --min-confidence` keeps).",
                  markdown_table(header, rows)]
        written.append(figures.coverage_figure(curves, figure_dir / f"accuracy_vs_coverage.{suffix}"))
    return parts, written
