"""Run directories → tables: one row per run × fold (sweep.csv) and mean ± std per configuration.

A run directory is any folder holding a `config.json` plus `metrics.json` (finished) or
`error.txt` (failed). Configuration columns come from config.json, metric columns from the
`test` block of metrics.json; `optimistic_*` columns hold the labelled best-test-epoch numbers
and `last_*` the last-epoch ones. Standard deviations are sample std (ddof=1) over folds and
seeds; with the runs' folder at hand, `<metric>_pooled`, `_ci_low` and `_ci_high` add a 95%
bootstrap interval over the test utterances pooled across folds (training.statistics). A
configuration's seed and fold count once: repeated run directories are left out (`repeated_runs`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser.data.atomic_files import read_first_line, read_json_or_none, write_text
from ser.studies.grid import HEAD_OPTION_PREFIX
from ser.training.statistics import pooled_intervals, read_pooled_predictions, sample_std
from ser.training.divergence import DIVERGED_PREFIX

# Columns that identify a configuration in every table (others are added when they vary).
CONFIG_COLUMNS = ("head", "shift_proportion", "shift_placement")
# every recipe setting config.json records (training/recipes.py Recipe): a run that changes any of
# them is a configuration of its own, not a repeat to leave out
RECIPE_COLUMNS = ("epochs", "lr", "batch_size", "weight_decay", "optimizer", "betas", "schedule", "warmup_epochs",
                  "warmup_lr", "min_lr", "grad_clip", "label_smoothing", "max_steps", "eval_every_updates")
# the fold scheme and the dev split asked for (not each fold's `dev_split`); config.json's `folds` is
# the column `fold_scheme`, as `folds` is the summary's count of folds
PROTOCOL_KEYS = ("folds", "k", "dev", "dev_fraction", "fold_seed")
COLUMN_OF_KEY = {"folds": "fold_scheme"}
PROTOCOL_COLUMNS = tuple(COLUMN_OF_KEY.get(key, key) for key in PROTOCOL_KEYS)
REPLICATE_COLUMNS = ("seed", "fold")
BASE_METRICS = ("ua", "wa", "macro_f1")
STATUS_DONE, STATUS_FAILED, STATUS_PENDING = "done", "failed", "pending"
STATUS_DIVERGED = "diverged"  # a non-finite loss or output stopped it: no metrics
STATUS_DAMAGED = "damaged"  # its config.json or metrics.json cannot be read


def scalar_metrics(block: dict | None, prefix: str = "") -> dict[str, float]:
    """The numeric entries of a metrics block (confusion matrices and label lists left out)."""
    if not block:
        return {}
    return {
        f"{prefix}{key}": float(value)
        for key, value in block.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


# metrics.json's objects of metrics → the prefix of their columns
METRIC_BLOCKS = {"test": "", "dev": "dev_", "test_last": "last_", "test_best_epoch_optimistic": "optimistic_"}


def metric_columns(metrics: dict) -> dict[str, Any]:
    """Flat metric columns of one metrics.json: test, dev-selected epoch, last and optimistic."""
    row: dict[str, Any] = {}
    for block, prefix in METRIC_BLOCKS.items():
        row.update(scalar_metrics(metrics.get(block), prefix))
    if metrics.get("best_epoch") is not None:
        row["best_epoch"] = int(metrics["best_epoch"])
    return row


def preset_shift(resolved: dict) -> tuple[str | None, str | None]:
    """(proportion per direction as `1/N`, placement) a head actually used, from the resolved
    options in config.json; (None, placement) for a head that does not shift."""
    placement = resolved.get("shift_placement")
    if placement in (None, "none"):
        return None, placement
    return f"1/{resolved['n_div']}", placement


def config_columns(config: dict) -> dict[str, Any]:
    """The options that identify a run, flattened from a config.json (see config.TrainConfig)."""
    head_kwargs = dict(config.get("head_kwargs") or {})
    preset_proportion, preset_placement = preset_shift(config.get("head_resolved") or {})
    row: dict[str, Any] = {
        "head": config.get("head"),
        "shift_proportion": head_kwargs.pop("shift_proportion", None) or preset_proportion,
        "shift_placement": head_kwargs.pop("shift_placement", None) or preset_placement,
        "seed": config.get("seed"),
        "fold": config.get("fold"),
        "per_speaker": bool(config.get("per_speaker", False)),  # written only when set
        "refit": bool(config.get("refit", False)),  # likewise
        "frequency_warp": float(config.get("frequency_warp", 0.0)),  # likewise
    }
    for key in (*RECIPE_COLUMNS, *PROTOCOL_KEYS, "standardize", "layers", "model", "task", "test_corpus",
                "dev_split"):
        if key in config:
            value = config[key]
            row[COLUMN_OF_KEY.get(key, key)] = ",".join(map(str, value)) if isinstance(value, list) else value
    for key, value in sorted(head_kwargs.items()):
        if value is not None:
            row[HEAD_OPTION_PREFIX + key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return row


def read_run(run_dir: Path) -> dict[str, Any]:
    """One row for one run directory (a fold of a run): configuration, status and test metrics."""
    row: dict[str, Any] = {}
    config, metrics = (read_json_or_none(run_dir / name) for name in ("config.json", "metrics.json"))
    if config is not None:
        row.update(config_columns(config))
    unreadable = [name for name, data in (("config.json", config), ("metrics.json", metrics))
                  if data is None and (run_dir / name).is_file()]
    misshapen = [block for block in METRIC_BLOCKS
                 if metrics is not None and not isinstance(metrics.get(block), (dict, type(None)))]
    if unreadable:
        row["status"] = STATUS_DAMAGED
        row["error"] = f"{' and '.join(unreadable)} cannot be read (empty or truncated): rerun to redo it"
    elif misshapen:  # valid JSON, but not what training writes (edited by hand?)
        row["status"] = STATUS_DAMAGED
        row["error"] = (f"metrics.json is not as training writes it (its `{misshapen[0]}` is no object of metrics): "
                        "delete it and run again")
    elif metrics is not None:
        row["status"] = STATUS_DONE
        row.update(metric_columns(metrics))
    elif (first_line := read_first_line(run_dir / "error.txt")) is not None:
        row["status"] = STATUS_DIVERGED if first_line.startswith(DIVERGED_PREFIX) else STATUS_FAILED
        row["error"] = first_line[:300]
    else:
        row["status"] = STATUS_PENDING
    row["fold_name"] = row.get("fold")
    numbered = re.fullmatch(r"fold(\d+)", run_dir.name)
    row["fold"] = int(numbered.group(1)) if numbered else row["fold_name"] or run_dir.name
    return row


def find_run_dirs(root: Path) -> list[Path]:
    """Every folder under `root` (itself included) holding metrics.json or error.txt, or the
    config.json of a run (an unfinished or damaged one), sorted."""
    found = {path.parent for name in ("metrics.json", "error.txt") for path in root.rglob(name)}
    for path in root.rglob("config.json"):
        config = read_json_or_none(path)
        if config is None or "head" in config:
            found.add(path.parent)
    return sorted(found)


def collect_runs(root: Path) -> pd.DataFrame:
    """One row per run directory under `root`; `run_dir` is relative to `root`."""
    rows = []
    for run_dir in find_run_dirs(root):
        row = read_run(run_dir)
        row["run_dir"] = run_dir.relative_to(root).as_posix() or "."
        rows.append(row)
    return order_columns(pd.DataFrame(rows))


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in reading order: configuration, replicates, status, run_dir, head options, metrics."""
    if df.empty:
        return df
    leading = [c for c in (*CONFIG_COLUMNS, *REPLICATE_COLUMNS, "fold_name", "status", "run_dir") if c in df.columns]
    options = sorted(c for c in df.columns if c.startswith(HEAD_OPTION_PREFIX))
    metrics = [c for c in BASE_METRICS if c in df.columns]
    metrics += sorted(c for c in df.columns if c.startswith("ccc_") or c == "mse")
    rest = [c for c in df.columns if c not in {*leading, *options, *metrics}]
    return df[leading + options + metrics + rest]


def configuration_columns(df: pd.DataFrame) -> list[str]:
    """Columns that tell configurations apart: the identity columns (head, shift proportion and
    placement) plus every other option that varies across the rows. Recipe values that only follow
    the head (each head's paper lr, epochs, …) do not count; seed and fold are replicates."""
    options = ["model", "task", "test_corpus", "layers", "standardize", "per_speaker", "refit", "frequency_warp",
               *PROTOCOL_COLUMNS,
               *sorted(c for c in df.columns if c.startswith(HEAD_OPTION_PREFIX))]
    text = df.astype(str)  # lists as written; a missing value counts as a value of its own (dropna=False)
    columns = [c for c in CONFIG_COLUMNS if c in df.columns]
    columns += [c for c in options if c in df.columns and text[c].nunique(dropna=False) > 1]
    if "head" in df.columns:
        per_head = text.groupby(df["head"])
        varied = [c for c in RECIPE_COLUMNS if c in df.columns and per_head[c].nunique(dropna=False).max() > 1]
    else:
        varied = [c for c in RECIPE_COLUMNS if c in df.columns and text[c].nunique(dropna=False) > 1]
    return columns + varied


def summary_metrics(df: pd.DataFrame) -> list[str]:
    """Metric columns worth summarising, in display order."""
    names = [c for c in BASE_METRICS if c in df.columns]
    names += sorted(c for c in df.columns if c.startswith("ccc_") or c == "mse")
    names += [c for c in df.columns if c.startswith("optimistic_") and c[len("optimistic_"):] in names]
    return names


def proportion_value(text: Any) -> float:
    """`1/8` → 0.125, `0.25` → 0.25 (for ordering); missing or unreadable → -1 (sorts last)."""
    numerator, _, denominator = str(text).partition("/")
    try:
        return float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        return -1.0


def config_key(values: dict[str, Any]) -> str:
    """A readable, stable label of one configuration: `shiftcnn 1/16 residual lr=0.001`."""
    parts = [str(v) if k in CONFIG_COLUMNS else f"{k.removeprefix(HEAD_OPTION_PREFIX)}={v}"
             for k, v in values.items() if not _is_missing(v)]
    return " ".join(parts) or "run"


def _is_missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def with_config_labels(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`df` plus a `config` column (the configuration's label); missing key values become ""."""
    filled = df.assign(**{k: df[k].astype(object).where(df[k].notna(), "") for k in keys})
    return filled.assign(config=[config_key(dict(zip(keys, row))) for row in filled[keys].itertuples(index=False)])


def repeated_runs(done: pd.DataFrame) -> pd.Series:
    """True for each finished row whose configuration, seed and fold an earlier row (in run_dir
    order) already has: identical runs are one sample, not several."""
    labelled = with_config_labels(done, configuration_columns(done))
    keys = [c for c in ("config", "seed", "fold") if c in labelled.columns]
    order = labelled.sort_values("run_dir", kind="stable") if "run_dir" in labelled.columns else labelled
    return order.duplicated(subset=keys).reindex(labelled.index)


def _intervals(group: pd.DataFrame, root: Path) -> dict[str, dict]:
    """Bootstrap intervals of one configuration: each seed's predictions pooled across its folds."""
    seeds = group.groupby("seed", sort=False) if "seed" in group.columns else [(None, group)]
    replicates = [read_pooled_predictions(root / d for d in rows["run_dir"]) for _, rows in seeds]
    return {} if any(r is None for r in replicates) else pooled_intervals(replicates)


def summarize(df: pd.DataFrame, root: Path | None = None) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count n over folds and seeds of every finished configuration,
    counting a configuration's seed and fold once; with `root` (the folder `run_dir` is relative
    to) also each metric's pooled value and 95% bootstrap interval over the test utterances."""
    done = df[df["status"] == STATUS_DONE] if "status" in df.columns else df
    if done.empty:
        return pd.DataFrame()
    done = done[~repeated_runs(done)]
    keys = configuration_columns(done)
    metrics = summary_metrics(done)
    rows = []
    for label, group in with_config_labels(done, keys).groupby("config", sort=False):
        row: dict[str, Any] = {k: group[k].iloc[0] for k in keys}
        row["config"] = label
        row["n"] = len(group)
        row["folds"] = group["fold"].astype(str).nunique()
        row["seeds"] = group["seed"].astype(str).nunique() if "seed" in group.columns else 1
        for metric in metrics:
            column = group[metric].dropna().to_numpy(dtype=np.float64)
            row[f"{metric}_mean"] = float(column.mean()) if len(column) else math.nan
            row[f"{metric}_std"] = sample_std(column)
        if root is not None and "run_dir" in group.columns:
            for metric, interval in _intervals(group, Path(root)).items():
                low, high = interval["ci95"]
                row.update({f"{metric}_pooled": interval["pooled"], f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        rows.append(row)
    summary = pd.DataFrame(rows)
    if "shift_proportion" in summary.columns:  # 1/2, 1/4, 1/8, 1/16 within each head and placement
        order = summary["shift_proportion"].map(proportion_value)
        summary = summary.assign(_order=-order).sort_values(
            [k for k in keys if k != "shift_proportion"] + ["_order"], kind="stable").drop(columns="_order")
    return summary.reset_index(drop=True)


def write_tables(df: pd.DataFrame, out_dir: Path, stem: str = "sweep", intervals: bool = False) -> tuple[Path, Path]:
    """Write `<stem>.csv` (every run × fold) and `<stem>_summary.csv` + `.json` atomically; with
    `intervals`, the summary adds bootstrap intervals (run_dir relative to `out_dir`)."""
    table_path = out_dir / f"{stem}.csv"
    summary_path = out_dir / f"{stem}_summary.csv"
    write_text(table_path, df.to_csv(index=False))
    summary = summarize(df, out_dir if intervals else None) if not df.empty else pd.DataFrame()
    write_text(summary_path, summary.to_csv(index=False))
    records = json.loads(summary.to_json(orient="records")) if not summary.empty else []
    write_text(out_dir / f"{stem}_summary.json", json.dumps(records, indent=2))
    return table_path, summary_path
