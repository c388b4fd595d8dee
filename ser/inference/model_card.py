"""The model card (README.md) of an exported model: what it predicts, from which backbone and
layers, the protocol it was trained and selected with, its test metrics, and how to use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser.inference.trained_model import TrainedModel

SCALAR_METRICS = ("ua", "wa", "macro_f1", "ccc_mean", "ccc_arousal", "ccc_valence", "ccc_dominance", "mse")


def _metrics_table(metrics: dict[str, dict], section: str) -> list[str]:
    folds = [fold for fold, values in metrics.items() if isinstance(values.get(section), dict)]
    if not folds:
        return ["No test set (a model trained on every labelled utterance): no test metrics.", ""]
    names = [name for name in SCALAR_METRICS if name in metrics[folds[0]][section]]
    lines = ["| fold | best epoch | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for fold in folds:
        values = metrics[fold][section]
        lines.append(f"| {fold} | {metrics[fold].get('best_epoch', '')} | "
                     + " | ".join(f"{values[name]:.4f}" for name in names) + " |")
    if len(folds) > 1:
        means = [np.array([metrics[fold][section][name] for fold in folds]) for name in names]
        lines.append("| mean ± sample std | | " + " | ".join(f"{m.mean():.4f} ± {m.std(ddof=1):.4f}" for m in means) + " |")
    return lines + [""]


def _calibration_lines(model: TrainedModel) -> list[str]:
    """Each fold's temperature and its test ECE / NLL before and after (metrics.json "calibration")."""
    if model.task.name != "categorical":
        return ["No calibration: a dimensional model's outputs are not probabilities.", ""]
    lines = ["Probabilities are softmax(logits / T), T fitted on each fold's dev split after training "
             "(`ser predict --uncalibrated` gives T = 1). Test ECE (15 bins) and NLL:", "",
             "| fold | T | ECE before | ECE after | NLL before | NLL after |", "|---|---|---|---|---|---|"]
    for fold in model.folds:
        block = model.metrics.get(fold.name, {}).get("calibration") or {}
        before, after = block.get("test_before"), block.get("test_after")
        scores = (f"{before['ece']:.4f} | {after['ece']:.4f} | {before['nll']:.4f} | {after['nll']:.4f}"
                  if before and after else "n/a | n/a | n/a | n/a")
        lines.append(f"| {fold.name} | {fold.temperature:.4f} | {scores} |")
    return lines + [""]


def model_card(model: TrainedModel, run: Path, reference: dict) -> str:
    """README.md of an exported folder."""
    config, features, task = model.config, model.features, model.task
    outputs = (f"categorical: {', '.join(task.labels)}" if task.name == "categorical"
               else f"dimensional: {', '.join(task.dimensions)} (on the training manifest's scale)")
    head = model.folds[0].spec
    options = ", ".join(f"{key}={value}" for key, value in head.items()
                        if key not in ("name", "in_dim", "num_layers", "num_classes"))
    folds_scheme = config.get("folds") or "the corpus's default"
    selection = "UA" if task.name == "categorical" else "mean CCC"
    cached_layers = features.get("layers")
    lines = [
        f"# {run.name}: speech emotion recognition ({config.get('corpus', '?')}, {config.get('model', '?')})", "",
        "Trained with `ser` (speech emotion recognition from cached backbone features).", "",
        "## What it predicts", f"- {outputs}",
        f"- {len(model.folds)} fold model(s): {', '.join(fold.name for fold in model.folds)}; "
        "`ser predict --fold all` averages their probabilities", "",
        "## Backbone",
        f"- id: `{reference['id']}`, source: `{reference['source']}`",
        f"- revision: `{reference['revision']}`, commit hash: `{reference['commit_hash'] or 'n/a'}`"
        + (" (random weights)" if reference["random_init"] else ""),
        f"- cached layers: {'all ' + str(features.get('num_layers')) if cached_layers is None else cached_layers}; "
        f"layers the head reads: {'all' if model.layers is None else model.layers}",
        f"- max seconds per utterance at extraction: {features.get('max_seconds') or 'none'}; "
        f"frame rate {features.get('frame_rate')} Hz; features stored as float16", "",
        "## Head",
        f"- `{head.get('name')}` on {head.get('num_layers')} layer(s) × {head.get('in_dim')}; {options}",
        f"- features standardised per layer and channel with each fold's training statistics: "
        f"{'yes' if config.get('standardize') else 'no'}", "",
        "## Protocol",
        f"- corpus `{config.get('corpus')}`, folds: {folds_scheme}"
        + (f" (k={config['k']})" if config.get("k") else ""),
        f"- dev: {config.get('dev_split') or config.get('dev')} {config.get('dev_fraction')} of each fold's training "
        f"part; the epoch is chosen on dev {selection}; nothing is chosen on test",
        f"- recipe: {config.get('optimizer')}, lr {config.get('lr')}, batch {config.get('batch_size')}, "
        f"{config.get('epochs')} epochs, seed {config.get('seed')}", "",
        "## Test metrics (at the dev-selected epoch)", "",
        *_metrics_table(model.metrics, "test"),
        "## Calibration", "",
        *_calibration_lines(model),
        "## Use", "",
        "```bash", "ser predict clip.wav --model-dir THIS_FOLDER", "```", "",
        "```python", "import ser", 'clf = ser.load("THIS_FOLDER")', 'clf.predict("clip.wav")', "```", "",
        "Files: config.json, model.safetensors, feature_scaler.safetensors (if standardised), labels.json, "
        "backbone.json, <fold>.onnx (standardisation + head, if exported with --onnx).", "",
    ]
    return "\n".join(lines)
