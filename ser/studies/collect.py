"""A sweep split over independent jobs (Slurm arrays): `--collect` merges the shares of `--shard I/N`
(shard.py).

`ser sweep … --shard I/N` plans the whole grid and trains only its I-th share (every N-th
run × fold, starting with the I-th, so every share holds a similar mix of heads); its own table
goes to `sweep-shard<I>of<N>.csv`, never to sweep.csv, so that N jobs never write one file.
`ser sweep … --collect` (the same options, run once all shares are done) plans the grid again,
trains nothing, and writes sweep.csv, the summaries and every run's summary.json from the run
directories: the same tables one `ser sweep` would have written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ser.errors import UserInputError
from ser.studies import results
from ser.studies.grid import Grid
from ser.studies.sweep import SweepSettings, SweepTable, plan_runs, resolve_inputs, write_run_summaries
from ser.training.loading import load_training_data


@dataclass
class CollectedSweep:
    """What `--collect` found in the run directories."""

    sweep_dir: Path
    table_path: Path
    summary_path: Path
    planned: int
    done: int
    failed: int
    pending: int  # runs no share has finished (or tried) yet
    summary: pd.DataFrame


def collect_sweep(grid: Grid, settings: SweepSettings) -> CollectedSweep:
    """sweep.csv and the summaries of the whole grid, from what the shares wrote (trains nothing)."""
    manifest, cache, corpus, model, sweep_dir, test_cache = resolve_inputs(settings)
    if not sweep_dir.is_dir():
        raise UserInputError(f"there is no sweep to collect in {sweep_dir}", "run the --shard I/N jobs first")
    data = load_training_data(  # the folds need the manifest and the cache's lengths, not its features
        manifest, cache, task=settings.task, layers=settings.layers, device="cpu",
        stream=None if settings.test_manifest is not None else True,
        test_manifest=settings.test_manifest, test_cache=test_cache, label_map=settings.label_map,
    )
    planned = plan_runs(grid, settings, data, sweep_dir, corpus, model)
    table = SweepTable(planned, sweep_dir)
    write_run_summaries(planned, grid.folds is None)
    table_path, summary_path = table.write(intervals=True)  # as a local sweep writes it
    frame = table.frame()
    status = frame["status"].value_counts()
    return CollectedSweep(
        sweep_dir, table_path, summary_path, planned=len(planned), done=int(status.get(results.STATUS_DONE, 0)),
        failed=int(status.get(results.STATUS_FAILED, 0)), pending=int(status.get(results.STATUS_PENDING, 0)),
        summary=results.summarize(frame),
    )
