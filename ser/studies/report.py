"""`ser report`: a Markdown ablation report with figures (PNG, PDF or SVG) from a folder of run
directories.

Works on a sweep directory or on any folder: every run directory below it (a folder with
metrics.json or error.txt) is one row. Tables show test metrics at the dev-selected epoch as
mean ± sample std over folds and seeds with the count n, and 95% bootstrap intervals over the
test utterances pooled across folds; a configuration's seed and fold count once however many run
directories repeat them. The optimistic best-test-epoch numbers appear only in their own table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ser.data.atomic_files import read_json, read_json_or_none, write_text
from ser.errors import UserInputError
from ser.studies import calibration_report, figures
from ser.studies.floor import BELOW_FLOOR, ProbeFloors
from ser.studies.results import (
    STATUS_DAMAGED,
    STATUS_DIVERGED,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    collect_runs,
    configuration_columns,
    proportion_value,
    repeated_runs,
    summarize,
    summary_metrics,
    with_config_labels,
)
from ser.training.statistics import mean_with_spread

# Markdown tables written beside run directories by other studies (scripts/distill_ablation.py);
# the report includes every one it finds under RUNS_DIR.
ABLATION_TABLE_FILE = "distill_ablation.md"

TABLE_AXES = ("head", "shift_proportion")  # rows × columns of an ablation table
PERCENT_METRICS = ("ua", "wa", "macro_f1")


def format_cell(mean: float, std: float, n: int, metric: str) -> str:
    """`65.43 ± 2.10 (n=5)` for accuracies (in %), `0.512 ± 0.031 (n=5)` for CCC-like metrics;
    `65.43 (n=1)` where one result has no spread."""
    if np.isnan(mean):
        return "—"
    scale, digits = (100, 2) if metric.removeprefix("optimistic_") in PERCENT_METRICS else (1, 3)
    return f"{mean_with_spread(scale * mean, scale * std, digits)} (n={n})"


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


def configuration_table(summary: pd.DataFrame, metrics: list[str], extra: dict[str, dict[str, str]] | None = None) -> str:
    """One row per configuration; `extra`: more columns, {column: {configuration: cell}}."""
    extra = extra or {}
    header = ["configuration", "folds", "seeds", *metrics, *extra]
    rows = [
        [r["config"], r["folds"], r["seeds"], *(format_cell(r[f"{m}_mean"], r[f"{m}_std"], r["n"], m) for m in metrics),
         *(cells.get(r["config"], "—") for cells in extra.values())]
        for _, r in summary.iterrows()
    ]
    return markdown_table(header, rows)


def interval_table(summary: pd.DataFrame, metrics: list[str]) -> str | None:
    """Per configuration: each metric over the test utterances pooled across folds (averaged over
    seeds) with its 95% bootstrap interval; None when no interval was computed."""
    shown = [m for m in metrics if f"{m}_ci_low" in summary.columns]
    if not shown:
        return None

    def cell(r, m: str) -> str:
        if np.isnan(r[f"{m}_pooled"]):
            return "—"
        scale, digits = (100, 2) if m in PERCENT_METRICS else (1, 3)
        return f"{scale * r[f'{m}_pooled']:.{digits}f} [{scale * r[f'{m}_ci_low']:.{digits}f}, {scale * r[f'{m}_ci_high']:.{digits}f}]"

    rows = [[r["config"], r["seeds"], *(cell(r, m) for m in shown)] for _, r in summary.iterrows()]
    return markdown_table(["configuration", "seeds", *shown], rows)


def _runs_of(labelled: pd.DataFrame, root: Path) -> dict[str, list[Path]]:
    return {name: [root / d for d in group["run_dir"]] for name, group in labelled.groupby("config", sort=False)}


def _confusion_figures(labelled: pd.DataFrame, root: Path, figure_dir: Path, suffix: str) -> list[Path]:
    """Per configuration: confusion counts per fold (summed over seeds) and over all folds."""
    written = []
    for name, group in labelled.groupby("config", sort=False):
        matrices: dict[str, np.ndarray] = {}
        labels: list[str] = []
        for _, row in group.iterrows():
            test = read_json(root / row["run_dir"] / "metrics.json").get("test") or {}  # None: --fold none
            if "confusion" not in test:
                continue
            labels = [str(label) for label in test.get("labels", range(len(test["confusion"])))]
            fold = f"fold {row['fold']}"
            matrices[fold] = matrices.get(fold, 0) + np.asarray(test["confusion"])
        if matrices:
            path = figure_dir / f"confusion_{slug(name)}.{suffix}"
            written.append(figures.confusion_figure(dict(sorted(matrices.items())), labels, name, path))
    return written


def _layer_weights(run_dir: Path) -> np.ndarray | None:
    path = run_dir / "layer_weights.json"
    data = read_json_or_none(path) if path.is_file() else None
    if data is None:
        return None
    weights = data.get("weights") if isinstance(data, dict) else data
    return None if weights is None else np.asarray(weights, dtype=np.float64)


def _layer_weight_figure(labelled: pd.DataFrame, root: Path, figure_dir: Path, suffix: str) -> tuple[list[Path], dict]:
    means = {}
    for name, run_dirs in _runs_of(labelled, root).items():
        found = [w for w in map(_layer_weights, run_dirs) if w is not None]
        if found and len({len(w) for w in found}) == 1:
            means[name] = np.mean(found, axis=0)  # (L,)
    if not means:
        return [], {}
    return [figures.layer_weights_figure(means, figure_dir / f"layer_weights.{suffix}")], means


def _history(run_dir: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(run_dir / "history.csv")
    except (OSError, ValueError):  # missing, empty or truncated: the figure leaves it out
        return None


def _curves_figure(labelled: pd.DataFrame, root: Path, figure_dir: Path, suffix: str) -> list[Path]:
    histories = {}
    for name, run_dirs in _runs_of(labelled, root).items():
        runs = [table for table in map(_history, run_dirs) if table is not None]
        if runs:
            histories[name] = runs
    return [figures.curves_figure(histories, figure_dir / f"training_curves.{suffix}")] if histories else []


def _proportion_figures(summary: pd.DataFrame, figure_dir: Path, suffix: str) -> list[Path]:
    if summary["shift_proportion"].astype(str).replace("", np.nan).dropna().nunique() < 2:
        return []
    return [figures.proportion_figure(summary, m, figure_dir / f"{m}_vs_proportion.{suffix}") for m in ("ua", "wa")]


def protocol_text(done: pd.DataFrame) -> str:
    """How the numbers were obtained, stated plainly at the top of the report."""
    folds = sorted(done["fold_name"].dropna().astype(str).unique()) if "fold_name" in done.columns else []
    held_out = f"Test folds: {', '.join(folds)} (each held out in turn). " if folds else ""
    splits = done["dev_split"].dropna().astype(str).value_counts() if "dev_split" in done.columns else {}
    dev = ("Dev splits (run × fold results): " + ", ".join(f"{mode} ({count})" for mode, count in splits.items())
           + ". ") if len(splits) else ""
    return (
        f"**Protocol.** {held_out}{dev}Every number is a test-set metric at the epoch chosen on the dev split "
        "alone (UA; CCC mean for dimensional runs): test scores of other epochs never influence the choice. "
        "Cells show mean ± sample std (ddof=1) over folds and seeds; n counts the run × fold results, each "
        "configuration, seed and fold once. Intervals are 95% percentile bootstraps over the test utterances "
        "pooled across folds (each utterance once; several seeds are averaged per resample). "
        "UA = unweighted (balanced) accuracy, WA = accuracy, both in %."
    )


def floor_text(floors: ProbeFloors) -> str:
    """What the floor rows are, and why a table has none."""
    text = (f"**Floor.** Rows `probe floor` are logistic regression (ridge for CCC) on the cache's pooled per-layer "
            f"mean+std (`ser probe`), same folds and dev split, C chosen by dev log-loss (for runs with "
            f"--per-speaker, of features z-scored per speaker, as the run saw them); {BELOW_FLOOR} marks a "
            "configuration whose mean does not beat the better of them on dev.")
    return text + "".join(f"\n- no floor for {note}" for note in floors.notes)


def nothing_finished(runs: pd.DataFrame, runs_dir: Path) -> UserInputError:
    """Why no run can be reported, pointing at what exists: the error.txt of a failed or diverged
    run, the damaged file of a damaged one, else the command that finishes pending runs."""
    counts = ", ".join(f"{count} {status}" for status, count in runs["status"].value_counts().items())
    message = f"none of the {len(runs)} runs under {runs_dir} has finished ({counts})"
    for statuses, file in (((STATUS_FAILED, STATUS_DIVERGED), "error.txt"), ((STATUS_DAMAGED,), None)):
        found = runs[runs["status"].isin(statuses)]
        if not found.empty:
            run, error = runs_dir / found["run_dir"].iloc[0], found["error"].iloc[0]
            return UserInputError(message, f"{run / file} says: {error}" if file else f"{run}: {error}")
    return UserInputError(message, "they have not finished: rerun the `ser train` or `ser sweep` command that "
                                   "started them, and it resumes them")


def write_report(runs_dir: Path, out_dir: Path | None = None, figure_format: str = "png",
                 workdir: Path | None = None) -> Path:
    """Write `report.md` and `figures/*.<figure_format>` (png, pdf or svg) for every run directory
    under `runs_dir`; returns the path of report.md (default folder: `runs_dir` itself). The probe
    floor's cache is looked for through the runs' sweep.json, in `workdir` and in the folders above
    `runs_dir`."""
    if figure_format not in figures.FORMATS:
        raise UserInputError(f"unknown figure format {figure_format!r}", f"choose one of: {', '.join(figures.FORMATS)}")
    if not runs_dir.is_dir():
        problem = "is not a folder" if runs_dir.exists() else "does not exist"
        raise UserInputError(f"{runs_dir} {problem}", "pass a sweep directory or a folder of run directories")
    runs = collect_runs(runs_dir)
    if runs.empty:
        raise UserInputError(f"no run directories (metrics.json) under {runs_dir}", "train or sweep first")
    out_dir = out_dir or runs_dir
    figure_dir = out_dir / "figures"
    for column in TABLE_AXES + ("shift_placement",):
        if column not in runs.columns:
            runs[column] = None
    done = runs[runs["status"] == STATUS_DONE]
    failed = runs[runs["status"].isin([STATUS_FAILED, STATUS_DIVERGED, STATUS_DAMAGED, STATUS_PENDING])]
    counts = runs["status"].value_counts()
    if done.empty:
        raise nothing_finished(runs, runs_dir)
    summary = summarize(runs, runs_dir)
    metrics = summary_metrics(done)
    honest = [m for m in metrics if not m.startswith("optimistic_")]
    repeated = repeated_runs(done)
    labelled = with_config_labels(done[~repeated], configuration_columns(done))
    floors = ProbeFloors(labelled, runs_dir, workdir)
    calibration = calibration_report.collect(labelled, runs_dir)

    suffix = figure_format
    written = _confusion_figures(labelled, runs_dir, figure_dir, suffix)
    layer_paths, layer_means = _layer_weight_figure(labelled, runs_dir, figure_dir, suffix)
    written += (layer_paths + _proportion_figures(summary, figure_dir, suffix)
                + _curves_figure(labelled, runs_dir, figure_dir, suffix))

    parts = [
        "# Ablation report",
        f"Source: `{runs_dir}` — {len(runs)} run directories ({len(done)} finished, "
        f"{counts.get(STATUS_FAILED, 0)} failed, {counts.get(STATUS_DIVERGED, 0)} diverged, "
        f"{counts.get(STATUS_DAMAGED, 0)} damaged, {counts.get(STATUS_PENDING, 0)} unfinished).",
        protocol_text(done),
        "## Ablation tables",
        *(block for m in ("ua", "wa", "ccc_mean") if m in honest for block in ablation_tables(summary, m, floors)),
        floor_text(floors),
        "## All configurations",
        configuration_table(summary, honest, {"ECE calibrated (uncalibrated)": calibration_report.ece_cells(calibration)}
                            if calibration else None),
    ]
    intervals = interval_table(summary, honest)
    if intervals:
        parts += ["## Pooled over utterances, with 95% bootstrap intervals", intervals]
    if repeated.any():
        left_out = ", ".join(f"`{d}`" for d in done[repeated]["run_dir"])
        parts += [f"**Repeated runs.** {int(repeated.sum())} run directories repeat a configuration, seed and fold "
                  f"that another one already gives and are left out of every table and figure: {left_out}."]
    calibration_parts, calibration_figures = calibration_report.section(calibration, figure_dir, suffix,
                                                                        markdown_table, slug)
    parts += calibration_parts
    written += calibration_figures
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
        rows = [[r["run_dir"], r["status"], str(r.get("error", "") if isinstance(r.get("error"), str) else "")
                 .replace("|", "/")] for _, r in failed.iterrows()]
        parts += ["## Failed runs (failed, diverged, damaged or unfinished: no metrics)", markdown_table(["run", "status", "error"], rows)]
    if written:
        parts += ["## Figures", *(f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in written)]
    report_path = out_dir / "report.md"
    write_text(report_path, "\n\n".join(parts) + "\n")
    records = json.loads(summary.to_json(orient="records"))
    write_text(out_dir / "report_summary.json", json.dumps(records, indent=2))
    return report_path
