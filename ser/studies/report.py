"""`ser report`: a Markdown ablation report with PNG figures from a folder of run directories.

Works on a sweep directory or on any folder: every run directory below it (a folder with
metrics.json or error.txt) is one row. Tables show test metrics at the dev-selected epoch as
mean ± std over folds and seeds with the count n; the optimistic best-test-epoch numbers appear
only in their own, labelled table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ser.data.atomic_files import read_json, write_text
from ser.errors import UserInputError
from ser.studies import figures
from ser.studies.floor import BELOW_FLOOR, ProbeFloors
from ser.studies.results import (
    STATUS_DONE,
    STATUS_FAILED,
    collect_runs,
    configuration_columns,
    proportion_value,
    summarize,
    summary_metrics,
    with_config_labels,
)

# Markdown tables written beside run directories by other studies (scripts/distill_ablation.py);
# the report includes every one it finds under RUNS_DIR.
ABLATION_TABLE_FILE = "distill_ablation.md"

TABLE_AXES = ("head", "shift_proportion")  # rows × columns of an ablation table
PERCENT_METRICS = ("ua", "wa", "macro_f1")


def format_cell(mean: float, std: float, n: int, metric: str) -> str:
    """`65.43 ± 2.10 (n=5)` for accuracies (in %), `0.512 ± 0.031 (n=5)` for CCC-like metrics."""
    if np.isnan(mean):
        return "—"
    if metric.removeprefix("optimistic_") in PERCENT_METRICS:
        return f"{100 * mean:.2f} ± {100 * std:.2f} (n={n})"
    return f"{mean:.3f} ± {std:.3f} (n={n})"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def ablation_tables(summary: pd.DataFrame, metric: str, floors: ProbeFloors | None = None) -> list[str]:
    """Rows = heads, columns = shift proportions; one table per value of the other varied options
    (the shift placement first). With `floors`, the probe floor comes first and cells that do not
    beat it are marked."""
    sections = [c for c in configuration_columns(summary) if c not in TABLE_AXES]
    groups = summary.groupby(sections, sort=False) if sections else [((), summary)]
    blocks = []
    for values, part in groups:
        values = values if isinstance(values, tuple) else (values,)
        where = ", ".join(f"{k} = {v if v != '' else '—'}" for k, v in zip(sections, values))
        proportions = sorted(dict.fromkeys(part["shift_proportion"].astype(str)), key=proportion_value, reverse=True)
        floor = floors.floor(list(part["config"])) if floors is not None else None
        floor = floor if floor is not None and metric in floor.threshold else None
        rows = [[row.label, *([format_cell(*row.scores[metric], metric)] * len(proportions))]
                for row in (floor.rows if floor is not None else [])]
        for head, head_rows in part.groupby("head", sort=False):
            cells = {str(r["shift_proportion"]): format_cell(r[f"{metric}_mean"], r[f"{metric}_std"], r["n"], metric)
                     + ("" if floor is None or floor.beaten(metric, r[f"{metric}_mean"]) else f" {BELOW_FLOOR}")
                     for _, r in head_rows.iterrows()}
            rows.append([str(head), *(cells.get(p, "") for p in proportions)])
        header = ["head \\ proportion", *(p or "—" for p in proportions)]
        title = f"### Test {metric.upper()}" + (f" — {where}" if where else "")
        blocks.append(f"{title}\n\n{markdown_table(header, rows)}")
    return blocks


def configuration_table(summary: pd.DataFrame, metrics: list[str]) -> str:
    header = ["configuration", "folds", "seeds", *metrics]
    rows = [
        [r["config"], r["folds"], r["seeds"], *(format_cell(r[f"{m}_mean"], r[f"{m}_std"], r["n"], m) for m in metrics)]
        for _, r in summary.iterrows()
    ]
    return markdown_table(header, rows)


def _runs_of(labelled: pd.DataFrame, root: Path) -> dict[str, list[Path]]:
    return {name: [root / d for d in group["run_dir"]] for name, group in labelled.groupby("config", sort=False)}


def _confusion_figures(labelled: pd.DataFrame, root: Path, figure_dir: Path) -> list[Path]:
    """Per configuration: confusion counts per fold (summed over seeds) and over all folds."""
    written = []
    for name, group in labelled.groupby("config", sort=False):
        matrices: dict[str, np.ndarray] = {}
        labels: list[str] = []
        for _, row in group.iterrows():
            test = read_json(root / row["run_dir"] / "metrics.json").get("test", {})
            if "confusion" not in test:
                continue
            labels = [str(label) for label in test.get("labels", range(len(test["confusion"])))]
            fold = f"fold {row['fold']}"
            matrices[fold] = matrices.get(fold, 0) + np.asarray(test["confusion"])
        if matrices:
            path = figure_dir / f"confusion_{slug(name)}.png"
            written.append(figures.confusion_figure(dict(sorted(matrices.items())), labels, name, path))
    return written


def _layer_weights(run_dir: Path) -> np.ndarray | None:
    path = run_dir / "layer_weights.json"
    if not path.is_file():
        return None
    data = read_json(path)
    weights = data.get("weights") if isinstance(data, dict) else data
    return None if weights is None else np.asarray(weights, dtype=np.float64)


def _layer_weight_figure(labelled: pd.DataFrame, root: Path, figure_dir: Path) -> tuple[list[Path], dict]:
    means = {}
    for name, run_dirs in _runs_of(labelled, root).items():
        found = [w for w in map(_layer_weights, run_dirs) if w is not None]
        if found and len({len(w) for w in found}) == 1:
            means[name] = np.mean(found, axis=0)  # (L,)
    if not means:
        return [], {}
    return [figures.layer_weights_figure(means, figure_dir / "layer_weights.png")], means


def _curves_figure(labelled: pd.DataFrame, root: Path, figure_dir: Path) -> list[Path]:
    histories = {}
    for name, run_dirs in _runs_of(labelled, root).items():
        runs = [pd.read_csv(d / "history.csv") for d in run_dirs if (d / "history.csv").is_file()]
        if runs:
            histories[name] = runs
    return [figures.curves_figure(histories, figure_dir / "training_curves.png")] if histories else []


def _proportion_figures(summary: pd.DataFrame, figure_dir: Path) -> list[Path]:
    if summary["shift_proportion"].astype(str).replace("", np.nan).dropna().nunique() < 2:
        return []
    return [figures.proportion_figure(summary, m, figure_dir / f"{m}_vs_proportion.png") for m in ("ua", "wa")]


def protocol_text(done: pd.DataFrame) -> str:
    """How the numbers were obtained, stated plainly at the top of the report."""
    folds = sorted(done["fold_name"].dropna().astype(str).unique()) if "fold_name" in done.columns else []
    held_out = f"Test folds: {', '.join(folds)} (each held out in turn). " if folds else ""
    return (
        f"**Protocol.** {held_out}Every number is a test-set metric at the epoch chosen on the dev split "
        "alone (UA; CCC mean for dimensional runs): test scores of other epochs never influence the choice. "
        "Cells show mean ± std (population std) over folds and seeds; n counts the run × fold results. "
        "UA = unweighted (balanced) accuracy, WA = accuracy, both in %."
    )


def floor_text(floors: ProbeFloors) -> str:
    """What the floor rows are, and why a table has none."""
    text = (f"**Floor.** Rows `probe floor` are logistic regression (ridge for CCC) on the cache's pooled per-layer "
            f"mean+std (`ser probe`), same folds and dev split, C chosen on dev; {BELOW_FLOOR} marks a configuration "
            "whose mean does not beat the better of them on dev.")
    return text + "".join(f"\n- no floor for {note}" for note in floors.notes)


def write_report(runs_dir: Path, out_dir: Path | None = None, workdir: Path | None = None) -> Path:
    """Write `report.md` and `figures/*.png` for every run directory under `runs_dir`; returns the
    path of report.md (default folder: `runs_dir` itself). The probe floor's cache is looked for
    through the runs' sweep.json, in `workdir` and in the folders above `runs_dir`."""
    if not runs_dir.is_dir():
        raise UserInputError(f"{runs_dir} is not a folder", "pass a sweep directory or a folder of run directories")
    runs = collect_runs(runs_dir)
    if runs.empty:
        raise UserInputError(f"no run directories (metrics.json) under {runs_dir}", "train or sweep first")
    out_dir = out_dir or runs_dir
    figure_dir = out_dir / "figures"
    for column in TABLE_AXES + ("shift_placement",):
        if column not in runs.columns:
            runs[column] = None
    done = runs[runs["status"] == STATUS_DONE]
    failed = runs[runs["status"] == STATUS_FAILED]
    if done.empty:
        raise UserInputError(f"none of the {len(runs)} runs under {runs_dir} has finished", "see their error.txt")
    summary = summarize(runs)
    metrics = summary_metrics(done)
    honest = [m for m in metrics if not m.startswith("optimistic_")]
    labelled = with_config_labels(done, configuration_columns(done))
    floors = ProbeFloors(labelled, runs_dir, workdir)

    written = _confusion_figures(labelled, runs_dir, figure_dir)
    layer_paths, layer_means = _layer_weight_figure(labelled, runs_dir, figure_dir)
    written += layer_paths + _proportion_figures(summary, figure_dir) + _curves_figure(labelled, runs_dir, figure_dir)

    parts = [
        "# Ablation report",
        f"Source: `{runs_dir}` — {len(runs)} run directories ({len(done)} finished, {len(failed)} failed).",
        protocol_text(done),
        "## Ablation tables",
        *(block for m in ("ua", "wa", "ccc_mean") if m in honest for block in ablation_tables(summary, m, floors)),
        floor_text(floors),
        "## All configurations",
        configuration_table(summary, honest),
    ]
    optimistic = [m for m in metrics if m.startswith("optimistic_")]
    if optimistic:
        parts += [
            "## Optimistic numbers (best test epoch) — not a fair estimate",
            "Test metrics at the epoch where test UA peaked, i.e. chosen on the test set itself, as some "
            "papers report them. Listed only for comparison with such papers; use the tables above.",
            configuration_table(summary, optimistic),
        ]
    if layer_means:
        width = max(len(w) for w in layer_means.values())
        header = ["configuration", *(f"L{i}" for i in range(width))]
        rows = [[name, *(f"{value:.3f}" for value in weights), *([""] * (width - len(weights)))]
                for name, weights in layer_means.items()]
        parts += ["## Learned layer weights", markdown_table(header, rows)]
    parts += [path.read_text().strip() for path in sorted(runs_dir.rglob(ABLATION_TABLE_FILE))]
    if not failed.empty:
        rows = [[r["run_dir"], str(r.get("error", "")).replace("|", "/")] for _, r in failed.iterrows()]
        parts += ["## Failed runs", markdown_table(["run", "error"], rows)]
    if written:
        parts += ["## Figures", *(f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in written)]
    report_path = out_dir / "report.md"
    write_text(report_path, "\n\n".join(parts) + "\n")
    records = json.loads(summary.to_json(orient="records"))
    write_text(out_dir / "report_summary.json", json.dumps(records, indent=2))
    return report_path
