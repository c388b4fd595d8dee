"""`ser sweep --search optuna --trials N`: sample the grid's axes with Optuna's TPE sampler instead
of training every combination (extra `ser[search]`).

The space is the sweep's grid: an option with several values is a categorical choice, one value
is fixed, and `low:high` is a range (`--lr 1e-5:1e-2` log-uniform for lr and weight decay;
integers for epochs, batch size, seeds, strides). A trial trains the sampled configuration on
the selected folds, exactly like a sweep's run (same run directories, same `sweep.csv` and
`sweep_summary.csv`), and scores it on dev only: the mean over folds of the dev metric that
selects epochs (UA, or mean CCC for dimensional tasks). Test metrics are recorded, never used.

`search.csv` has one row per trial (its sampled values, dev score, state) and `search.json` the
settings and the best trial. The sampler is seeded, so rerunning the same command replays the
same trials: finished runs are read back, not retrained, and an interrupted search continues.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ser.data.atomic_files import write_text
from ser.errors import UserInputError
from ser.heads import HEADS
from ser.studies.grid import AXIS_TYPES, Grid, build_grid, canonical_name
from ser.studies.sweep import SweepSettings, SweepTable, resolve_inputs, plan_runs, train_config
from ser.studies.sweep_progress import SweepProgress
from ser.studies.sweep_worker import run_task
from ser.training import run_dir as files
from ser.training.loading import load_training_data
from ser.training.protocol import protocol_folds, select_folds

SEARCHES = ("optuna",)
LOG_SCALE_AXES = ("lr", "weight_decay")


@dataclass(frozen=True)
class Range:
    """A numeric interval to sample from (both ends included)."""

    low: float
    high: float
    integer: bool = False
    log: bool = False


@dataclass
class SearchOutcome:
    sweep_dir: Path
    table_path: Path
    search_path: Path
    trials: pd.DataFrame  # one row per trial
    best: dict[str, Any] | None  # the best finished trial: number, values, dev score


def parse_range(name: str, text: str) -> Range:
    """`low:high` for a numeric sweep option → Range (log scale for lr and weight decay)."""
    convert = AXIS_TYPES.get(name)
    if convert not in (int, float):
        raise UserInputError(f"{name} takes values, not a range ({text!r})", "list choices instead, e.g. a,b,c")
    low_text, _, high_text = text.partition(":")
    try:
        low, high = convert(low_text), convert(high_text)
    except ValueError:
        raise UserInputError(f"bad range {text!r} for {name}", "write it as low:high, e.g. 1e-5:1e-2") from None
    if not low < high:
        raise UserInputError(f"range {text!r} for {name} is empty", "write the lower end first")
    log = name in LOG_SCALE_AXES
    if log and low <= 0:
        raise UserInputError(f"range {text!r} for {name} must be positive (sampled on a log scale)")
    return Range(low, high, integer=convert is int, log=log)


def split_ranges(cli_axes: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, Range]]:
    """The command line's axes without their `low:high` ranges, and the ranges."""
    values, ranges = {}, {}
    for name, texts in cli_axes.items():
        pieces = [piece.strip() for text in texts or [] for piece in str(text).split(",") if piece.strip()]
        if any(":" in piece for piece in pieces):
            if len(pieces) != 1:
                raise UserInputError(f"--{name.replace('_', '-')} mixes a range with other values",
                                     "give either one low:high range or a list of values")
            key = canonical_name(name)
            ranges[key] = parse_range(key, pieces[0])
        else:
            values[name] = texts
    return values, ranges


def search_space(grid: Grid, ranges: dict[str, Range]) -> dict[str, tuple | Range]:
    """Each option's choices (a tuple) or range; options a range names lose their grid values."""
    if len(grid.parts) != 1:
        raise UserInputError("--search samples one grid, not a union of `grids`", "merge the sub-grids into one")
    return {**grid.parts[0], **ranges}


def sample_point(trial, space: dict[str, tuple | Range]) -> dict[str, Any]:
    """One configuration: a trial's suggestion for every option that varies, the fixed ones as they are."""
    point = {}
    for name, choice in space.items():
        if isinstance(choice, Range):
            suggest = trial.suggest_int if choice.integer else trial.suggest_float
            low, high = (int(choice.low), int(choice.high)) if choice.integer else (choice.low, choice.high)
            point[name] = suggest(name, low, high, log=choice.log)
        elif len(choice) > 1:
            point[name] = trial.suggest_categorical(name, list(choice))
        else:
            point[name] = choice[0]
    return point


def _fold_count(grid: Grid, settings: SweepSettings, data, corpus: str, model: str) -> int:
    """Folds each trial trains (the sweep's --fold selection of the protocol)."""
    test_corpus = data.cross.test_corpus if data.cross is not None else None
    folds = protocol_folds(train_config(grid.points()[0], settings, corpus, model, test_corpus), data)
    return sum(len(select_folds(folds, which)) for which in (grid.folds or ("all",)))


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserInputError("--search optuna needs the optuna package", "pip install 'ser[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def run_search(
    cli_axes: dict[str, list[str]],
    head_options: list[str],
    cli_folds: list[str] | None,
    settings: SweepSettings,
    grid_file: Path | None = None,
    trials: int = 20,
    seed: int = 0,
    search: str = "optuna",
) -> SearchOutcome:
    """Sample `trials` configurations of the sweep's space with TPE, train each on the selected
    folds, and record them like a sweep; trials are chosen on dev only."""
    if search not in SEARCHES:
        raise UserInputError(f"unknown --search {search!r}", "choose one of: " + ", ".join(SEARCHES))
    if trials < 1:
        raise UserInputError("--trials must be at least 1")
    if settings.jobs not in (None, 1):
        raise UserInputError("--jobs does not apply to --search", "a search trains its trials one after another")
    optuna = _optuna()
    values, ranges = split_ranges(cli_axes)
    grid = build_grid(grid_file, values, head_options, cli_folds)
    space = search_space(grid, ranges)
    for head in grid.values("head"):
        HEADS.get(head)
    manifest, cache, corpus, model, sweep_dir, test_cache = resolve_inputs(settings)
    data = load_training_data(manifest, cache, task=settings.task, layers=settings.layers, device=settings.device,
                              test_manifest=settings.test_manifest, test_cache=test_cache, label_map=settings.label_map,
                              per_speaker=settings.per_speaker)
    selection = data.task.selection_metric
    sweep_dir.mkdir(parents=True, exist_ok=True)
    planned_by_key: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []

    def objective(trial) -> float:
        point = sample_point(trial, space)
        planned = plan_runs(Grid(({name: (value,) for name, value in point.items()},), grid.folds),
                            settings, data, sweep_dir, corpus, model)
        scores = []
        for run in planned:
            planned_by_key[run.task.key] = run
            if not files.is_finished(run.task.out_dir):
                progress.started(run.task.key)
                progress.finished(run_task(run.task, data, progress.epoch))
            if files.is_finished(run.task.out_dir):
                scores.append(files.read_json(run.task.out_dir / files.METRICS)["dev"][selection])
        SweepTable(list(planned_by_key.values()), sweep_dir).write()
        score = sum(scores) / len(scores) if len(scores) == len(planned) else math.nan  # a failed fold fails the trial
        rows.append({"trial": trial.number, **point, f"dev_{selection}": score,
                     "run": planned[0].task.key.split("/")[0]})
        write_text(sweep_dir / "search.csv", pd.DataFrame(rows).to_csv(index=False))
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    previous = torch.get_num_threads()
    torch.set_num_threads(settings.threads or 1)  # as a sweep trains a run alone: the same numbers
    try:
        with SweepProgress(trials * _fold_count(grid, settings, data, corpus, model), 0) as progress:
            study.optimize(objective, n_trials=trials)
    finally:
        torch.set_num_threads(previous)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = None
    if finished:
        winner = max(finished, key=lambda t: t.value)
        best = {"trial": winner.number, "params": winner.params, f"dev_{selection}": winner.value}
    table_path, _ = SweepTable(list(planned_by_key.values()), sweep_dir).write(intervals=True)
    search_path = sweep_dir / "search.json"
    write_text(search_path, json.dumps(
        {"search": search, "sampler": "TPE", "trials": trials, "seed": seed, "selection": f"dev {selection}",
         "space": {name: (vars(choice) if isinstance(choice, Range) else list(choice)) for name, choice in space.items()},
         "manifest": str(manifest), "cache": str(cache), "corpus": corpus, "model": model,
         "folds": settings.folds, "fold": None if grid.folds is None else list(grid.folds), "best": best},
        indent=2, default=str))
    return SearchOutcome(sweep_dir, table_path, search_path, pd.DataFrame(rows), best)
