"""The linear probe's evaluation cadence on a small corpus: wall time and the dev-selected score.

s3prl's emotion recipe is 30,000 updates of 32 clips with dev scored every 1,000 updates
(`eval_step`); on a 535-clip corpus that is ≈ 2,700 epochs of ≈ 11 updates. Trains fold 1 of
`ser train --head linear --standardize` on an fbank cache three ways, interleaved `--repeats`
times (medians of wall and CPU time reported):
  every-epoch   --eval-every-updates 0: dev and test scored after every epoch (the old loop);
  cadence       the recipe's default, every 1,000 updates (and the last);
  updates-only  --eval-every-updates 30000: the 30,000 updates and one evaluation at the end.
The workspace (synthetic corpus, 8 speakers × 4 emotions × 17 clips = 544, and its fbank cache)
is made under --workdir when missing.

    python benchmarks/cadence.py --workdir /work/scale-scratch/cadence [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARMS = {"every-epoch": ["--eval-every-updates", "0"], "cadence": [], "updates-only": ["--eval-every-updates", "30000"]}


def cpu_seconds() -> float:
    """User + system CPU time of the finished child processes: less sensitive than wall time to
    other work on a shared machine (each run trains on one thread)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ser(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "ser.cli", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "cache" / "synthetic" / "fbank.h5").is_file():
        ser("prepare", "synthetic", "data/synthetic", "--speakers", "8", "--sessions", "4", "--per-class", "17", cwd=work)
        ser("extract", "--model", "fbank", cwd=work)
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for repeat in range(args.repeats):
        for arm, options in ARMS.items():
            out = work / "runs" / f"{arm}-{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            began, used = time.perf_counter(), cpu_seconds()
            ser("train", "--head", "linear", "--fold", "1", "--standardize", "--threads", args.threads,
                "--out", str(out), *options, cwd=work)
            seconds, cpu = time.perf_counter() - began, cpu_seconds() - used
            metrics = json.loads((out / "fold1" / "metrics.json").read_text())
            results[arm].append({"seconds": seconds, "cpu": cpu, "dev_ua": metrics["dev"]["ua"], "test_ua": metrics["test"]["ua"],
                                 "best_epoch": metrics["best_epoch"]})
            print(f"{arm:<13} run {repeat + 1}: {seconds:.1f} s ({cpu:.1f} s CPU), dev UA {metrics['dev']['ua']:.3f}, test UA "
                  f"{metrics['test']['ua']:.3f}, selected epoch {metrics['best_epoch']}", flush=True)
    base = statistics.median(r["seconds"] for r in results["updates-only"])
    base_cpu = statistics.median(r["cpu"] for r in results["updates-only"])
    print("medians:")
    for arm, runs in results.items():
        seconds, cpu = statistics.median(r["seconds"] for r in runs), statistics.median(r["cpu"] for r in runs)
        print(f"  {arm:<13} {seconds:.1f} s ({seconds / base:.2f}x updates-only), CPU {cpu:.1f} s "
              f"({cpu / base_cpu:.2f}x), selected dev UA "
              f"{statistics.median(r['dev_ua'] for r in runs):.3f}, test UA {statistics.median(r['test_ua'] for r in runs):.3f}")


if __name__ == "__main__":
    main()
