"""How much a sweep saves over separate `ser train` processes, and where the time goes.

On the synthetic corpus, K ShiftCNN configurations (4 proportions × 2 placements × 2 seeds = 16
by default, fold 1) are trained three ways, side by side in one run of this script:
  separate   K `ser train` processes, one after the other;
  one by one `ser sweep --batch-runs off` (one loaded cache, runs in worker processes);
  batched    `ser sweep --batch-runs on` (the K runs as stacked models: one forward/backward for K members).
Prints each wall time and the ratios to the separate runs. Targets: batched <= 0.2 of separate
on an fbank cache, <= 0.5 on a wavlm-base-shaped cache (--cache wavlm: D=768, 13 layers,
random weights), <= 0.1 on a GPU. On a GPU it also prints the GPU's utilisation during each
sweep (nvidia-smi sampled every 0.25 s: mean, median and peak %, and peak memory).

    python benchmarks/sweep.py --epochs 5                 # K = 16, fbank, CPU
    python benchmarks/sweep.py --cache wavlm --epochs 2   # the wavlm-base-shaped cache
    python benchmarks/sweep.py --device cuda --jobs 4

Findings, 2 cores, 2026-12-01 (batched: 2 workers, one stacked model each, real frames only).
2026-12-03, 12:25 and 12:35 UTC, fbank, same options as below: separate 32.9 / 32.8 s, one by one
9.6 / 9.4 s, batched 11.7 / 11.3 s: 0.354 / 0.346, 0.293 / 0.288, batched / one by one 1.21 / 1.20.
The batched command alone at this commit and at eb0809f (1.04 the evening before), taking turns:
10.6 / 10.1 s against 10.9 / 10.0 s, so the change is this machine's drift, not a regression.
wavlm-shaped, same options as below: separate 73.3 s estimated (4.5-4.8 s per run), one by one
42.9 s, batched (4 stacked models of K = 4) 48.0 s: 0.655 / 0.586 / 1.119.
2026-12-03, after the CNN heads' depthwise conv went channels-last (heads/cnn.py), fbank, same
options as below: separate 33.3 s, one by one 9.6 s, batched 10.0 s: 0.299 / 0.286 / 1.044.
wavlm-shaped, same options as below: separate 70.7 s estimated, one by one 38.5 s, batched (4
stacked models of K = 4) 40.9 s: 0.579 / 0.545 / 1.062.
2026-12-03, later, after the sweep stopped importing scipy.stats (its imports 1.79 -> 1.14 s),
fbank, same options as below: separate 35.2 s, one by one 10.8 s, batched 10.8 s: 0.306 /
0.308 / 0.993 (the separate runs were faster too than an hour before: the machine drifts).
2026-12-03 afternoon, after `ser` stopped tearing the interpreter down at exit (0.3-0.7 s of
every command, benchmarks/process_exit.py), fbank, same options as below: separate 41.3 s (was
45.6), one by one 13.0 s, batched 12.2 s: batched / separate 0.295, one by one / separate
0.315, batched / one by one 0.938. Every process got cheaper by the same fixed amount, so the
ratios to the separate runs rose. (Its start-up row, 29.0 s, still counted each process's
teardown; it no longer does.) wavlm-shaped, same options as below: separate 74.0 s estimated (4.5
s per run), one by one 42.2 s, batched (4 stacked models of K = 4) 44.7 s: 0.604 / 0.571 /
1.058.
2026-12-03 (machine faster again: benchmarks/stacked.py shiftcnn D=80 at 356-381 ms against
585-640 the day before), after real frames moved by row gathers: fbank, same options as below:
separate 45.6 s (27.5 s start-up, 1.1 s of training each), one by one 12.9 s, batched 12.8 s:
batched / separate 0.281, one by one / separate 0.283, batched / one by one 0.993 (before the
row gathers, same day: 0.285 and 0.311, batched / one by one 1.02 and 1.12). wavlm-shaped, same
options as below: separate 88.0 s estimated (5.5 s per run), one by one 49.2 s, batched 50.7 s:
0.576 / 0.559 / 1.03. On 2 CPU cores the stacked step does the arithmetic of its K solo steps;
the separate runs are cheap enough now (1.7 s of start-up each) that no CPU sweep reaches the
targets.
2026-12-02 (faster machine that day), freed blocks kept in the heap (ser/training/allocator.py)
against huge pages, same fbank options as below: separate 69.0 s (40.6 s start-up), one by one
15.0 s, batched 17.9 s: batched / separate 0.259, one by one / separate 0.218, batched / one by
one 1.19 (huge pages, same day: 0.273 / 0.225 / 1.22). The separate runs got cheaper again, so
the ratios rose. wavlm-shaped (`--cache wavlm --epochs 2 --speakers 4 --sessions 2 --per-class 4
--separate-sample 4`): batched / separate 0.523, one by one / separate 0.579, batched / one by
one 0.904 (separate 154 s estimated, 9.6 s per run); the batched sweep alone, huge pages against
kept blocks, alternating: 92.4 / 77.5 s and 92.2 / 83.1 s, peak RSS 3.3 / 3.7 GB. Capping K at
2 or 4 instead of 8 (fbank, 4 rounds each) changed the batched sweep by less than its noise.
2026-12-02 16:25 UTC, after `ser train` stopped importing torch._dynamo (torch.optim's first use)
and scikit-learn: fbank `--epochs 5 --speakers 4 --sessions 2 --per-class 8`: batched / separate
0.256, one by one / separate 0.240, batched / one by one 1.07. The separate runs got cheaper,
not the sweeps slower: in the same session before these changes, separate 173.3 s (109 s of it
start-up, 6.8 s per process), one by one 33.3 s, batched 35.0 s (0.202); after, separate
122.0 s (69.5 s start-up, 4.3 s per process), one by one 29.3 s, batched 31.3 s.
wavlm-shaped (`--cache wavlm --epochs 2 --speakers 4 --sessions 2 --per-class 4
--separate-sample 4`), same session: batched (4 stacked models of K = 4) / separate 0.474, one by
one / separate 0.513, batched / one by one 0.924 (separate 268 s estimated from 4 runs).
2026-12-02 12:20 UTC (idle machine, load average 0.2 before): fbank `--epochs 5 --speakers 4
--sessions 2 --per-class 8`: batched / separate 0.197, one by one / separate 0.163, batched /
one by one 1.21 (training phase 27.8 vs 22.7 s; the 16 separate runs spend 99 of their 180 s
importing). wavlm-shaped `--cache wavlm --epochs 2 --speakers 4 --sessions 2 --per-class 4
--separate-sample 4`: batched (4 stacked models of K = 4) / separate 0.350, one by one /
separate 0.388, batched / one by one 0.901.
2026-12-02, after every head family stacked (same fbank options as below, one run): batched /
separate 0.204, one by one / separate 0.171, batched / one by one 1.19 (training phase 15.5 vs
12.5 s; the 16 separate runs spend 50 of their 95 s importing). benchmarks/stacked.py
--head shiftcnn --dims 80 gave 1.29 at this commit and 1.15 at the commit before the LSTM,
TIM-Net and CTA-RNN families (same session, --repeats 5), within this machine's drift.
With tensors on huge pages (THP_MEM_ALLOC_ENABLE=1, set by every `ser` command until 2026-12-02), fbank, same
options as below: batched / separate 0.163, one by one / separate 0.158, batched / one by one
1.03 (training phase 17.9 vs 16.1 s).
Latest (workers forked, not spawned: they start at once, with the cache already loaded):
- fbank, `--epochs 5 --speakers 4 --sessions 2 --per-class 8`, three runs: batched / separate
  0.197, 0.225, 0.193; one by one / separate 0.189, 0.211, 0.188; batched / one by one 1.04,
  1.07, 1.03. The batched training phase took 18.5-21.2 s, against 20.7-22.7 s with spawned
  workers; the 16 separate runs spend 57-78 s of their 121-125 s importing.
- wavlm-shaped (same options as below): batched / separate 0.395, one by one / separate 0.379,
  batched / one by one 1.04.
- Profile of a K = 8 stacked model in one process, one thread (`OMP_NUM_THREADS=1 python -m
  cProfile -m ser.cli sweep ... --seeds 0 --batch-runs on --jobs 1`, 30.8 s): backward 5.6 s,
  batched products 3.7 s, GELU 1.5 s, conv 1.3 s, the rest mostly imports. The time is
  arithmetic that stacking does not reduce on CPU, so the ratio follows the machine's load.
Earlier, with spawned workers:
- fbank, `--epochs 5 --speakers 4 --sessions 2 --per-class 8`: batched / separate 0.213 (0.218
  in an earlier run; 0.261 with one in-process stacked model on 2 threads and padded frames),
  one by one / separate 0.220, batched / one by one 0.969. About 4-5 s of each sweep is
  spawning the two workers; each of the 16 separate runs pays about 4-5 s of imports.
- wavlm-shaped, `--cache wavlm --epochs 2 --speakers 4 --sessions 2 --per-class 4
  --separate-sample 4`: batched (4 stacked models of K = 4) / separate 0.357 (0.547 before),
  one by one / separate 0.369, batched / one by one 0.966.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SER = [sys.executable, "-c", "from ser.cli import run; run()"]
PROPORTIONS = ("1/2", "1/4", "1/8", "1/16")
PLACEMENTS = ("residual", "inplace")
SEEDS = ("0", "1")
CACHES = {"fbank": ["--model", "fbank"], "wavlm": ["--model", "wavlm-base", "--random-init"]}


def run(command: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of a command that must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(command)}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout + done.stderr


class GpuUtilisation:
    """Samples `nvidia-smi` (utilisation %, memory used MiB of every GPU) every `period` seconds
    while a command runs: `with GpuUtilisation() as gpu: ...`, then `gpu.summary()`."""

    QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, period: float = 0.25):
        self.period, self.samples = period, []  # [(max utilisation %, total memory MiB)] over the GPUs
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stopped.wait(self.period):
            try:
                out = subprocess.run(self.QUERY, capture_output=True, text=True, timeout=5).stdout
                rows = [[float(v) for v in line.split(",")] for line in out.strip().splitlines()]
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return
            if rows:
                self.samples.append((max(r[0] for r in rows), sum(r[1] for r in rows)))

    def __enter__(self) -> "GpuUtilisation":
        if shutil.which("nvidia-smi"):
            self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "not measured (no nvidia-smi answer)"
        busy = [u for u, _ in self.samples]
        return (f"mean {statistics.mean(busy):.0f}%, median {statistics.median(busy):.0f}%, peak {max(busy):.0f}%, "
                f"memory peak {max(m for _, m in self.samples):.0f} MiB ({len(self.samples)} samples)")


def configurations(count: int) -> list[tuple[str, str, str]]:
    """(proportion, placement, seed): ShiftCNN's 4 × 2 × 2 grid, the first `count` of it."""
    grid = [(p, pl, seed) for seed in SEEDS for pl in PLACEMENTS for p in PROPORTIONS]
    if count > len(grid):
        sys.exit(f"--configs at most {len(grid)}")
    return grid[:count]


def prepare_workspace(workdir: Path, args: argparse.Namespace) -> None:
    if not (workdir / "manifests" / "synthetic.csv").is_file():
        run([*SER, "prepare", "synthetic", str(workdir / "data"), "--workdir", str(workdir), "--speakers",
             str(args.speakers), "--sessions", str(args.sessions), "--per-class", str(args.per_class)])
    run([*SER, "extract", *CACHES[args.cache], "--workdir", str(workdir)])


def startup_seconds(repeats: int = 3) -> float:
    """Interpreter + imports of a training process (median of a few); it ends as `ser` does, without
    the interpreter's teardown (ser/cli/process_exit.py)."""
    return statistics.median(run([sys.executable, "-c", "import os, ser.cli, ser.training.run; os._exit(0)"])[0]
                             for _ in range(repeats))


def sweep_seconds(command: list[str], configs: int) -> tuple[float, dict]:
    """(wall seconds, the sweep's own timings) of one `ser sweep` command."""
    wall, out = run(command)
    found = re.search(r"(\d+) jobs; seconds: start-up ([\d.]+), cache load ([\d.]+), training phase ([\d.]+) "
                      r"\(runs' own time summed: ([\d.]+)\)", " ".join(out.split()))
    if found is None:
        sys.exit(f"could not read the sweep's timings:\n{out}")
    if configs != int(re.search(r"sweep: (\d+) run", out).group(1)):
        sys.exit("the sweep did not plan exactly the K configurations")
    batched = re.search(r"as (\d+) stacked model\(s\) of K = ([\d/]+) members", out)
    names = ("jobs", "startup", "load", "phase", "runs")
    return wall, {**dict(zip(names, (float(v) for v in found.groups()))),
                  "models": batched.group(1) if batched else "0", "members": batched.group(2) if batched else "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--configs", type=int, default=16, help="K configurations (16: the whole grid)")
    parser.add_argument("--cache", choices=sorted(CACHES), default="fbank", help="fbank, or wavlm (D=768, random init)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the shiftcnn paper recipe (100)")
    parser.add_argument("--fold", default="1", help="the fold every run trains on")
    parser.add_argument("--jobs", type=int, default=None, help="one-by-one sweep concurrency (default: the sweep's own)")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse a workspace (default: a temp folder)")
    parser.add_argument("--speakers", type=int, default=8, help="synthetic corpus size (its defaults)")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--separate-sample", type=int, default=None,
                        help="time only this many of the K separate runs and scale their sum by K/N (labelled)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ser-bench-sweep-"))
    prepare_workspace(workdir, args)
    for previous in workdir.glob("bench-*"):  # a reused workspace: finished runs would be skipped, not timed
        shutil.rmtree(previous)
    configs = configurations(args.configs)
    model = CACHES[args.cache][1]
    common = ["--fold", args.fold, "--device", args.device, "--workdir", str(workdir), "--model", model]
    if args.epochs is not None:
        common += ["--epochs", str(args.epochs)]

    separate = []
    sample = configs if args.separate_sample is None else configs[: args.separate_sample]
    for number, (proportion, placement, seed) in enumerate(sample):
        seconds, _ = run([*SER, "train", "--head", "shiftcnn", "--shift-proportion", proportion, "--shift-placement",
                          placement, "--seed", seed, *common, "--out", str(workdir / "bench-separate" / str(number))])
        separate.append(seconds)
        print(f"  ser train shiftcnn {proportion} {placement} seed {seed}: {seconds:.1f} s", flush=True)

    def axis(index: int) -> str:
        return ",".join(dict.fromkeys(c[index] for c in configs))

    grid = ["--head", "shiftcnn", "--shift-proportion", axis(0), "--shift-placement", axis(1), "--seeds", axis(2)]
    one_by_one = [*SER, "sweep", *grid, *common, "--batch-runs", "off", "--out", str(workdir / "bench-sweep-off")]
    if args.jobs is not None:
        one_by_one += ["--jobs", str(args.jobs)]
    with GpuUtilisation() as off_gpu:
        off_wall, off = sweep_seconds(one_by_one, len(configs))
    print(f"  ser sweep --batch-runs off: {off_wall:.1f} s", flush=True)
    with GpuUtilisation() as on_gpu:
        on_wall, on = sweep_seconds([*SER, "sweep", *grid, *common, "--batch-runs", "on", "--out",
                                     str(workdir / "bench-sweep-on")], len(configs))
    print(f"  ser sweep (batched, {on['models']} stacked models of K = {on['members']}): {on_wall:.1f} s", flush=True)

    startup = startup_seconds()
    k = len(configs)
    total = sum(separate) * len(configs) / max(1, len(sample))
    estimated = " (estimated from {} of them)".format(len(sample)) if len(sample) < len(configs) else ""
    print(f"\nK = {k} ShiftCNN runs (4 proportions × 2 placements × 2 seeds), {args.cache} cache, fold {args.fold}, "
          f"epochs {args.epochs or 'default (paper recipe)'}, device {args.device}, workspace {workdir}")
    print(f"{'':34}{'separate':>10}{'one by one':>12}{'batched':>10}")
    print(f"{'wall time (s)':34}{total:10.1f}{off_wall:12.1f}{on_wall:10.1f}   separate: sum of K processes{estimated}")
    print(f"{'  start-up (imports) (s)':34}{k * startup:10.1f}{off['startup']:12.1f}{on['startup']:10.1f}")
    print(f"{'  cache loading (s)':34}{'':10}{off['load']:12.2f}{on['load']:10.2f}")
    print(f"{'  training phase (s)':34}{'':10}{off['phase']:12.1f}{on['phase']:10.1f}   "
          f"(one by one: {int(off['jobs'])} jobs; batched: {on['models']} stacked models of K = {on['members']} "
          f"in {int(on['jobs'])} jobs)")
    if sample:
        print(f"ratio batched / separate = {on_wall / total:.3f}   (target <= 0.2 fbank, <= 0.5 wavlm-shaped, "
              f"<= 0.1 GPU)")
        print(f"ratio one by one / separate = {off_wall / total:.3f}")
    print(f"ratio batched / one by one = {on_wall / off_wall:.3f}")
    if args.device != "cpu":
        print(f"GPU utilisation, one by one: {off_gpu.summary()}")
        print(f"GPU utilisation, batched:    {on_gpu.summary()}")


if __name__ == "__main__":
    main()
