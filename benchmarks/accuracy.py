"""Accuracy on real speech: every head with default options against the probe floor.

For one corpus, through the real CLI as a user runs it (`ser prepare`, `ser extract`, `ser probe`,
`ser train --fold all`), on the recipe's speaker-independent protocol, with default options:

    python benchmarks/accuracy.py --corpus turev --root /corpora/TurEV-DB
    python benchmarks/accuracy.py --corpus ased --root /corpora/ASED_V1 --features fbank,mfcc,egemaps
    python benchmarks/accuracy.py --corpus ased --root … --heads shiftcnn,timnet --jobs 2
    python benchmarks/accuracy.py --corpus turev --root … --heads shiftcnn --refit   (`ser train --refit`)
    python benchmarks/accuracy.py --corpus turev --root … --heads shiftcnn --record-test-curve

It prints one table per corpus: head × features → test UA mean ± sample std over folds, the
pooled 95% bootstrap interval (test utterances of all folds), Δ to the floor of the same features
(mean UA − the probe's mean UA, the probe's layer chosen on dev), the epochs trained and the mean
dev-selected epoch, and wall time. Two columns say why a head stands where it does:
  folds ≥ floor   on how many folds its test UA reaches the floor's on the same fold;
  train loss / dev UA at the selected epochs (means over folds): a train loss near 0 with test far
                  under dev says the head learned its training speakers, not the emotions of new ones.
With --record-test-curve (`ser train --record-test-curve`: the same selected-epoch figures) a last
column gives the optimistic mean, test UA at the epoch that test itself would pick: where it is
under the floor, no rule for choosing the epoch lifts the head over it.
The floor rows are `ser probe` on the cache's pooled statistics. Rows whose run failed keep their
place with the error. The table also goes to `<workdir>/accuracy-<corpus>[-refit][-curve].md`; each
step but the probe is skipped when its output exists, so a killed run resumes. Nothing here is
tuned per corpus: the heads run with the options a new user gets.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

HEADS = ("cnn", "shiftcnn", "lstm", "shiftlstm", "transformer", "shiftformer", "timnet", "ctarnn", "linear")


@dataclass
class Row:
    """One line of the table: a head (or the floor) on one kind of features."""

    head: str
    features: str
    ua_mean: float | None = None
    ua_std: float | None = None
    pooled: tuple[float, float, float] | None = None  # (pooled UA, ci low, ci high)
    epochs: str = ""
    seconds: float | None = None
    error: str = ""
    fold_ua: dict[str, float] = field(default_factory=dict)  # fold name → test UA
    at_selected: str = ""  # mean train loss / dev UA at the dev-selected epochs
    optimistic: float | None = None  # mean over folds of test UA at the best test epoch (--record-test-curve)


def ser(*args: str, workdir: Path) -> float:
    """Run one `ser` command in a subprocess (output to the log); its wall time in seconds."""
    log = workdir / "accuracy.log"
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ ser {' '.join(args)}\n")
        out.flush()
        process = subprocess.Popen([sys.executable, "-m", "ser.cli", *args, "--workdir", str(workdir)],
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            returncode = process.wait()
        finally:
            if process.poll() is None:  # this script was stopped: stop the run too (a rerun resumes it)
                process.terminate()
                process.wait()
    if returncode != 0:
        raise RuntimeError(f"ser {args[0]} exited {returncode}: see {log}")
    return time.perf_counter() - start


def floor_row(workdir: Path, features: str) -> Row:
    """`ser probe` on the cache: the layer with the best mean dev UA (every layer, and all together).
    Always run: it takes seconds, and reuses its result beside the cache unless the cache or the
    probe itself changed since."""
    out = workdir / "probes" / features
    seconds = ser("probe", "--model", features, "--out", str(out), workdir=workdir)
    summary = pd.read_csv(out / "probe_summary.csv", dtype={"layer": str})
    best = summary.loc[summary["dev_ua_mean"].idxmax()]
    folds = pd.read_csv(out / "probe.csv", dtype={"layer": str, "fold": str})
    chosen = folds[folds["layer"] == best["layer"]]
    return Row("probe floor", features, best["ua_mean"], best["ua_std"], epochs=f"layer {best['layer']}",
               seconds=seconds, fold_ua=dict(zip(chosen["fold"], chosen["ua"])))


def head_row(workdir: Path, corpus: str, features: str, head: str, jobs: int, epochs: int | None,
             refit: bool = False, curve: bool = False) -> Row:
    """`ser train --head HEAD --fold all` with default options (and --refit, --record-test-curve),
    read back from its summary.json."""
    run_name = (f"accuracy-{head}" + (f"-e{epochs}" if epochs else "") + ("-refit" if refit else "")
                + ("-curve" if curve else ""))
    run_dir = workdir / "runs" / corpus / features / run_name
    row = Row(head, features)
    timing = run_dir / "wall_seconds.txt"
    if not (run_dir / "summary.json").exists():
        options = ((["--epochs", str(epochs)] if epochs else []) + (["--refit"] if refit else [])
                   + (["--record-test-curve"] if curve else []))
        try:
            row.seconds = ser("train", "--head", head, "--model", features, "--fold", "all", "--jobs", str(jobs),
                              "--run-name", run_name, *options, workdir=workdir)
        except RuntimeError as error:
            row.error = str(error)
            return row
        timing.write_text(f"{row.seconds:.1f}\n")
    elif timing.exists():
        row.seconds = float(timing.read_text())
    ua = json.loads((run_dir / "summary.json").read_text())["test"]["ua"]
    row.ua_mean, row.ua_std = ua["mean"], ua["std"]
    if "ci95" in ua:
        row.pooled = (ua["pooled"], *ua["ci95"])
    read_folds(row, sorted(p for p in run_dir.iterdir() if (p / "metrics.json").exists()))
    return row


def read_folds(row: Row, folds: list[Path]) -> None:
    """Fill `row`'s per-fold columns from its fold folders: the selected and trained epochs, each
    fold's test UA, train loss and dev UA at the selected epoch (history.csv), the optimistic UA."""
    metrics = [json.loads((p / "metrics.json").read_text()) for p in folds]
    configs = [json.loads((p / "config.json").read_text()) for p in folds]
    best = [m["best_epoch"] for m in metrics if m.get("best_epoch") is not None]
    row.epochs = f"{sum(best) / len(best):.0f} of {configs[0].get('epochs')}" if best else str(configs[0].get("epochs"))
    row.fold_ua = {config["fold"]: m["test"]["ua"] for config, m in zip(configs, metrics)}
    histories = [pd.read_csv(p / "history.csv") for p in folds]
    chosen = pd.concat([h[h["epoch"] == m.get("best_epoch")] for h, m in zip(histories, metrics)])
    if not chosen.empty and "dev_ua" in chosen:
        row.at_selected = f"{chosen['train_loss'].mean():.2f} / {percent(chosen['dev_ua'].mean())}"
    optimistic = [m["test_best_epoch_optimistic"]["ua"] for m in metrics if "test_best_epoch_optimistic" in m]
    row.optimistic = sum(optimistic) / len(optimistic) if optimistic else None


def folds_at_floor(row: Row, floor: Row) -> str:
    """'k of n': the folds where the head's test UA reaches the floor's on the same fold."""
    shared = [name for name in row.fold_ua if name in floor.fold_ua]
    reached = sum(row.fold_ua[name] >= floor.fold_ua[name] for name in shared)
    return f"{reached} of {len(shared)}" if shared else ""


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def table(corpus: str, rows: list[Row], floors: dict[str, Row], refit: bool = False) -> str:
    """The Markdown table: floors first, then every head per features."""
    options = "default options" + (" and --refit" if refit else "")
    lines = [f"### {corpus}: test UA (%) over speaker-independent folds, {options}", "",
             "| head | features | UA mean ± std | pooled [95% CI] | Δ floor | folds ≥ floor | "
             "at the selected epoch: train loss / dev UA | epochs (selected of trained) | wall s | "
             "best test epoch (optimistic) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row.error:
            lines.append(f"| {row.head} | {row.features} | failed: {row.error} | | | | | | | |")
            continue
        pooled = f"{percent(row.pooled[0])} [{percent(row.pooled[1])}, {percent(row.pooled[2])}]" if row.pooled else ""
        floor = floors[row.features]
        delta, reached = ("", "") if row is floor else (f"{100 * (row.ua_mean - floor.ua_mean):+.1f}",
                                                         folds_at_floor(row, floor))
        seconds = "" if row.seconds is None else f"{row.seconds:.0f}"
        lines.append(f"| {row.head} | {row.features} | {percent(row.ua_mean)} ± {percent(row.ua_std)} | {pooled} | "
                     f"{delta} | {reached} | {row.at_selected} | {row.epochs} | {seconds} | "
                     f"{percent(row.optimistic)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="a `ser prepare` recipe, e.g. ased or turev")
    parser.add_argument("--root", required=True, type=Path, help="the corpus as published")
    parser.add_argument("--features", default="fbank,mfcc", help="comma-separated cache models")
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--workdir", type=Path, help="default: ./accuracy-<corpus>")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="folds trained side by side")
    parser.add_argument("--epochs", type=int, help="replace every recipe's epochs (default: the recipes' own)")
    parser.add_argument("--refit", action="store_true", help="train the heads with `ser train --refit`")
    parser.add_argument("--record-test-curve", action="store_true",
                        help="score test every epoch too (`ser train --record-test-curve`): the optimistic column")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwinds into ser()'s cleanup
    workdir = (args.workdir or Path(f"accuracy-{args.corpus}")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "manifests" / f"{args.corpus}.csv").exists():
        ser("prepare", args.corpus, str(args.root.resolve()), workdir=workdir)
    rows, floors = [], {}
    for features in args.features.split(","):
        if not (workdir / "cache" / args.corpus / f"{features}.h5").exists():
            ser("extract", "--model", features, workdir=workdir)
        floors[features] = floor_row(workdir, features)
        rows.append(floors[features])
        for head in args.heads.split(","):
            rows.append(head_row(workdir, args.corpus, features, head, args.jobs, args.epochs, args.refit,
                                 args.record_test_curve))
            print(table(args.corpus, rows, floors, args.refit).splitlines()[-1], flush=True)
    text = table(args.corpus, rows, floors, args.refit)
    suffix = ("-refit" if args.refit else "") + ("-curve" if args.record_test_curve else "")
    (workdir / f"accuracy-{args.corpus}{suffix}.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
