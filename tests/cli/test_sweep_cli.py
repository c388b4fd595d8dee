"""End to end through the real CLI: a sweep killed mid-way and restarted, then `ser report`."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

SER = [sys.executable, "-c", "from ser.cli import run; run()"]  # the console script's entry point
GRID = ["--head", "shiftcnn", "--shift-proportion", "1/2,1/8", "--shift-placement", "residual,inplace",
        "--fold", "all", "--epochs", "2", "--jobs", "2", "--device", "cpu"]


def ser(*args: str, workdir: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([*SER, *args, "--workdir", str(workdir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def finished_runs(sweep_dir: Path) -> dict[str, int]:
    return {str(p.parent.relative_to(sweep_dir)): p.stat().st_mtime_ns for p in sweep_dir.glob("*/fold*/metrics.json")}


def test_sweep_survives_a_kill_and_report_matches_the_run_files(tmp_path: Path):
    workdir = tmp_path / "ws"
    ser("prepare", "synthetic", str(tmp_path / "data"), "--speakers", "4", "--sessions", "2", "--per-class", "4",
        workdir=workdir)
    ser("extract", "--model", "fbank", workdir=workdir)
    sweep_dir = workdir / "runs" / "synthetic" / "fbank" / "sweep"

    # 1. start the sweep and SIGKILL it (with its workers) as soon as the first run × fold finished
    first = subprocess.Popen([*SER, "sweep", *GRID, "--workdir", str(workdir)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while not finished_runs(sweep_dir) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before_restart = finished_runs(sweep_dir)
    assert 1 <= len(before_restart) < 8, "the kill must land mid-sweep"

    # 2. the same command again: finishes the rest, does not retrain what was finished
    second = ser("sweep", *GRID, workdir=workdir)
    assert f"{8 - len(before_restart)} trained, {len(before_restart)} already finished, 0 failed" in second.stdout
    assert f"{len(before_restart)} finished runs skipped" in second.stderr  # the progress display's lines
    assert f"[{8 - len(before_restart)}/{8 - len(before_restart)}] done" in second.stderr
    after = finished_runs(sweep_dir)
    assert len(after) == 8
    assert {run: after[run] for run in before_restart} == before_restart

    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert len(table) == 8 and table["run_dir"].is_unique
    assert set(table["status"]) == {"done"}
    assert sorted(zip(table["shift_proportion"], table["shift_placement"], table["fold"])) == sorted(
        (p, pl, f) for p in ("1/2", "1/8") for pl in ("residual", "inplace") for f in (1, 2))
    for _, row in table.iterrows():
        metrics = json.loads((sweep_dir / row["run_dir"] / "metrics.json").read_text())["test"]
        assert row["ua"] == pytest.approx(metrics["ua"], abs=1e-12)
        assert row["wa"] == pytest.approx(metrics["wa"], abs=1e-12)

    # 3. the report: Markdown + PNG figures, table cells equal to the metrics.json files
    report = ser("report", str(sweep_dir), workdir=workdir)  # --workdir is accepted (default RUNS_DIR: runs/)
    assert "report.md" in report.stdout
    markdown = (sweep_dir / "report.md").read_text()
    figures = list((sweep_dir / "figures").glob("*.png"))
    assert len(figures) >= 4 and all(p.read_bytes()[:4] == b"\x89PNG" for p in figures)
    for placement in ("residual", "inplace"):
        section = markdown.split(f"### Test UA — shift_placement = {placement}\n\n", 1)[1].split("\n\n", 1)[0]
        row = next(line for line in section.splitlines() if line.startswith("| shiftcnn"))
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        for proportion, cell in zip(("1/2", "1/8"), cells):
            runs = sweep_dir.glob(f"shiftcnn-p{proportion.replace('/', '_')}-{placement}-*/fold*/metrics.json")
            values = np.array([json.loads(p.read_text())["test"]["ua"] for p in runs])
            mean, std, n = re.fullmatch(r"([\d.]+) ± ([\d.]+) \(n=(\d+)\)(?: ▽)?", cell).groups()  # ▽: below the probe floor
            assert int(n) == len(values) == 2
            assert float(mean) == pytest.approx(100 * values.mean(), abs=0.006)
            assert float(std) == pytest.approx(100 * values.std(ddof=1), abs=0.006)


def test_a_misspelt_head_fails_at_once_with_a_suggestion(tmp_path: Path):
    done = subprocess.run([*SER, "sweep", "--head", "shiftcn", "--workdir", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown head 'shiftcn'" in done.stderr and "shiftcnn" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_configuration_of_one_run_shows_its_value_without_a_nan_spread():
    from rich.console import Console

    from ser.cli.sweep_cmd import print_summary
    from ser.studies.results import summarize

    runs = pd.DataFrame([{"head": "linear", "shift_proportion": None, "shift_placement": "none", "seed": 0, "fold": 1,
                          "status": "done", "run_dir": "linear/fold1", "ua": 0.5138, "wa": 0.5186}])
    console = Console(record=True, width=120)
    print_summary(console, summarize(runs))
    shown = console.export_text()
    assert "0.5138" in shown and "nan" not in shown, shown  # was `0.5138 ± nan` (one fold, one seed)
