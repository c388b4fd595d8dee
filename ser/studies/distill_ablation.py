"""The distillation ablation: audio-only vs teacher (audio + text) vs students (conditioned on
each quality estimate, and unconditioned), over several seeds, on one workspace.

`ablation_runs` trains every row (dimensional task) and returns one row per run × seed with the
test CCCs (mean over the chosen folds); `ablation_table` renders the Markdown table
(mean ± std over seeds) that scripts/distill_ablation.py writes for the report.
`synthetic_text_workspace` builds the offline workspace the script and the tests run it on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ser.data.manifest import manifest_sha256, read_manifest, utterance_records, write_manifest
from ser.data.text_extraction import run_text_extraction
from ser.features.backbones import load_backbone
from ser.features.extract import extract
from ser.features.text_backbones import save_tiny_text_model
from ser.training.config import TrainConfig
from ser.distill.student import DistillConfig, run_distillation
from ser.training.run import run_training
from ser.training.statistics import mean_with_spread
from ser.distill.teacher import TEACHER_HEAD, run_teacher_training

METRICS = ("ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean")
ABLATION_HEADING = "## Distillation ablation: audio-only vs teacher vs students (test CCC, mean ± std over seeds)"


def synthetic_text_workspace(
    workdir: Path, corpus: pd.DataFrame | None = None, hidden_size: int = 64
) -> tuple[pd.DataFrame, str]:
    """Manifest (written from `corpus`; None: the one already there), fbank cache and a tiny random
    text encoder with its cache, each made only when missing → (manifest rows, text model dir)."""
    manifest = Path(workdir) / "manifests" / "synthetic.csv"
    if corpus is not None:
        write_manifest(corpus, manifest)
    df = read_manifest(manifest)
    cache = Path(workdir) / "cache" / "synthetic" / "fbank.h5"
    if not cache.is_file():
        extract(utterance_records(df, manifest), load_backbone("fbank"), cache, manifest_sha256=manifest_sha256(df))
    text_model = Path(workdir) / "tiny-text-model"
    if not (text_model / "config.json").is_file():
        save_tiny_text_model(text_model, list(df["text"]), hidden_size=hidden_size)  # 37 words: separable in 64 dims
    run_text_extraction(workdir, str(text_model))
    return df, str(text_model)


def _row(system: str, seed: int, results: dict[str, dict], run_dir: Path) -> dict:
    test = {name: float(np.mean([fold["test"][name] for fold in results.values()])) for name in METRICS}
    return {"system": system, "seed": seed, **test, "folds": len(results), "run_dir": str(run_dir)}


def ablation_runs(
    workdir: Path,
    text_model: str,
    seeds: list[int],
    head: str = "linear",
    which: str = "all",
    estimates: tuple[str, ...] = ("none", "heldout", "mc-dropout", "agreement"),
    settings: DistillConfig = DistillConfig(),
    device: str = "cpu",
    dev: str = "auto",
    **recipe,
) -> pd.DataFrame:
    """Train audio-only, teacher and one student per estimate for every seed → one row per run
    (`dev`: the dev split of the audio-only and teacher runs; students inherit the teacher's)."""
    rows = []
    for seed in seeds:
        audio = TrainConfig.create(head, seed=seed, task="dimensional", dev=dev, **recipe)
        run_dir, results = run_training(workdir, audio, which, device=device)
        rows.append(_row(f"audio-only ({head})", seed, results, run_dir))
        teacher = TrainConfig.create(TEACHER_HEAD, seed=seed, task="dimensional", dev=dev, **recipe)
        teacher_dir, results = run_teacher_training(workdir, teacher, text_model, which, device=device)
        rows.append(_row("teacher (audio + text)", seed, results, teacher_dir))
        for estimate in estimates:
            chosen = dataclasses.replace(settings, quality=estimate)
            run_dir, results = run_distillation(workdir, teacher_dir, head, chosen, which, seed=seed,
                                                device=device, **recipe)
            kind = "unconditioned" if estimate == "none" else f"conditioned: {estimate}"
            rows.append(_row(f"student ({head}, {kind})", seed, results, run_dir))
    return pd.DataFrame(rows)


def ablation_table(runs: pd.DataFrame) -> str:
    """Markdown: one row per system, test CCC mean ± sample std (ddof=1) over seeds (n seeds)."""
    lines = ["| system | " + " | ".join(METRICS) + " | n |", "|---" * (len(METRICS) + 2) + "|"]
    for system, group in runs.groupby("system", sort=False):
        cells = [mean_with_spread(group[name].mean(), group[name].std(ddof=1), 3) for name in METRICS]  # 1 seed: no ±
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {len(group)} |")
    return "\n".join(lines) + "\n"
