"""How far temperature scaling takes a run's test calibration, beside the temperature fitted on test itself.

For each run directory (its folds' metrics.json "calibration" and predictions.csv, written at T = 1):
  before      test ECE at T = 1;
  dev T       test ECE at the fold's temperature, fitted on its dev split (what `ser` ships);
  oracle T    test ECE at the temperature fitted (by NLL) on the fold's own test clips: the
              test NLL no temperature can beat. It peeks at test, yet it is not the lowest test
              ECE (a dev T can score a lower ECE: ASED MFCC ShiftCNN fold 1, 0.041 against 0.064);
  floor       the ECE that a perfectly calibrated model with the dev-T confidences would still score
              on that many clips (ser.training.calibration.ece_noise_floor): sampling noise.
Per fold (mean over folds, and how many folds end at ≤ half of before or started at ≤ 0.05) and
pooled (every fold's test clips at once, each with its fold's temperature).

    python benchmarks/calibration.py accuracy-ased/runs/ased/mfcc/accuracy-shiftcnn-e30 [RUN ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ser.training.calibration import ece, ece_noise_floor, fit_temperature, recalibrate
from ser.training.statistics import class_probabilities, read_fold_predictions

SMALL = 0.05  # the bar: ECE at or below it needs no halving


def fold_arrays(fold_dir: Path) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(probabilities at T = 1 (N, C), class indices (N,), dev temperature), or None when absent."""
    try:
        block = json.loads((fold_dir / "metrics.json").read_text())["calibration"]
    except (OSError, KeyError, ValueError):
        return None
    tables = read_fold_predictions([fold_dir])
    found = class_probabilities(tables[0]) if tables else None
    return None if found is None else (*found, float(block["temperature"]))


def scored(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """ECE before, at the dev T and at the test-fitted T, and the noise floor at the dev T."""
    log_p = np.log(np.clip(probabilities, 1e-300, None))  # logits up to a per-row constant
    oracle = fit_temperature(log_p, labels)
    calibrated = recalibrate(probabilities, temperature)
    return {"before": ece(probabilities, labels), "dev T": ece(calibrated, labels),
            "oracle T": ece(recalibrate(probabilities, oracle), labels), "floor": ece_noise_floor(calibrated),
            "T": temperature, "oracle": oracle}


def halved(row: dict) -> bool:
    return row["before"] <= SMALL or row["dev T"] <= row["before"] / 2


def report(run: Path) -> None:
    folds = [(d.name, arrays) for d in sorted(run.glob("fold*")) if (arrays := fold_arrays(d)) is not None]
    if not folds:
        print(f"{run}: no calibrated folds with predictions.csv")
        return
    rows = [scored(*arrays) for _, arrays in folds]
    print(f"{run} ({len(folds)} folds)")
    for (name, _), row in zip(folds, rows):
        print(f"  {name:<8} ECE before {row['before']:.3f}  dev T {row['dev T']:.3f} (T {row['T']:.2f})  "
              f"oracle T {row['oracle T']:.3f} (T {row['oracle']:.2f})  floor {row['floor']:.3f}  "
              f"{'halved or small' if halved(row) else 'NOT halved'}")
    means = {key: float(np.mean([row[key] for row in rows])) for key in ("before", "dev T", "oracle T", "floor")}
    print(f"  mean     ECE before {means['before']:.3f}  dev T {means['dev T']:.3f}  oracle T {means['oracle T']:.3f}  "
          f"floor {means['floor']:.3f}  folds halved or small: {sum(map(halved, rows))}/{len(rows)}")
    probabilities = np.concatenate([arrays[0] for _, arrays in folds])
    labels = np.concatenate([arrays[1] for _, arrays in folds])
    dev_t = np.concatenate([recalibrate(arrays[0], arrays[2]) for _, arrays in folds])
    oracle = np.concatenate([recalibrate(arrays[0], row["oracle"]) for (_, arrays), row in zip(folds, rows)])
    pooled = {"before": ece(probabilities, labels), "dev T": ece(dev_t, labels)}
    print(f"  pooled   ECE before {pooled['before']:.3f}  dev T {pooled['dev T']:.3f}  "
          f"oracle T {ece(oracle, labels):.3f}  floor {ece_noise_floor(dev_t):.3f}  ({len(labels)} clips; "
          f"{'halved or small' if halved(pooled) else 'NOT halved'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="Run directories (holding fold*/).")
    for run in parser.parse_args().runs:
        report(run)


if __name__ == "__main__":
    main()
