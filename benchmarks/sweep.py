"""How much a sweep saves over separate `ser train` processes, and where the time goes.

Prints the ratio (wall time of one `ser sweep` over K configurations) / (sum of the wall times
of the same K runs as separate `ser train` processes) on the synthetic corpus with an fbank
cache, each head with its default (paper) epochs unless --epochs is given. Target: <= 0.5 on
CPU, <= 0.25 on a GPU (--device cuda).

    python benchmarks/sweep.py                    # K = 8 ShiftCNN proportion × placement runs, CPU
    python benchmarks/sweep.py --device cuda --jobs 4
    python benchmarks/sweep.py --epochs 20        # a quicker look
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SER = [sys.executable, "-c", "from ser.cli import main; main()"]
PROPORTIONS = ("1/2", "1/4", "1/8", "1/16")
PLACEMENTS = ("residual", "inplace")


def run(command: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of a command that must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(command)}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


def configurations(count: int) -> list[tuple[str, str, str]]:
    """(head, proportion, placement): ShiftCNN's 4 × 2 grid first, then ShiftLSTM's."""
    grid = [(head, p, pl) for head in ("shiftcnn", "shiftlstm") for pl in PLACEMENTS for p in PROPORTIONS]
    if count > len(grid):
        sys.exit(f"--configs at most {len(grid)}")
    return grid[:count]


def prepare_workspace(workdir: Path, args: argparse.Namespace) -> None:
    if not (workdir / "manifests" / "synthetic.csv").is_file():
        run([*SER, "prepare", "synthetic", str(workdir / "data"), "--workdir", str(workdir), "--speakers",
             str(args.speakers), "--sessions", str(args.sessions), "--per-class", str(args.per_class)])
    run([*SER, "extract", "--model", "fbank", "--workdir", str(workdir)])


def startup_seconds(repeats: int = 3) -> float:
    """Interpreter + imports of a training process (median of a few)."""
    return statistics.median(run([sys.executable, "-c", "import ser.cli, ser.training.run"])[0]
                             for _ in range(repeats))


def cache_load_seconds(workdir: Path, device: str) -> float:
    """Manifest + labels + the whole cache into memory, once, in this process."""
    from ser.training.loading import load_training_data

    started = time.perf_counter()
    load_training_data(workdir / "manifests" / "synthetic.csv", workdir / "cache" / "synthetic" / "fbank.h5",
                       device=device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--configs", type=int, default=8, help="K configurations (>= 8 for the target)")
    parser.add_argument("--epochs", type=int, default=None, help="default: each head's paper recipe")
    parser.add_argument("--fold", default="1", help="the fold every run trains on")
    parser.add_argument("--jobs", type=int, default=None, help="sweep concurrency (default: the sweep's own)")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse a workspace (default: a temp folder)")
    parser.add_argument("--speakers", type=int, default=8, help="synthetic corpus size (its defaults)")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=12)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ser-bench-sweep-"))
    prepare_workspace(workdir, args)
    configs = configurations(args.configs)
    common = ["--fold", args.fold, "--device", args.device, "--workdir", str(workdir)]
    if args.epochs is not None:
        common += ["--epochs", str(args.epochs)]

    separate = []
    for number, (head, proportion, placement) in enumerate(configs):
        seconds, _ = run([*SER, "train", "--head", head, "--shift-proportion", proportion, "--shift-placement",
                          placement, *common, "--out", str(workdir / "bench-separate" / str(number))])
        separate.append(seconds)
        print(f"  ser train {head} {proportion} {placement}: {seconds:.1f} s", flush=True)

    heads = ",".join(dict.fromkeys(h for h, _, _ in configs))
    proportions = ",".join(dict.fromkeys(p for _, p, _ in configs))
    placements = ",".join(dict.fromkeys(pl for _, _, pl in configs))
    sweep_command = [*SER, "sweep", "--head", heads, "--shift-proportion", proportions, "--shift-placement", placements,
                     *common, "--out", str(workdir / "bench-sweep")]
    if args.jobs is not None:
        sweep_command += ["--jobs", str(args.jobs)]
    sweep_wall, sweep_out = run(sweep_command)
    found = re.search(r"(\d+) jobs; seconds: start-up ([\d.]+), cache load ([\d.]+), training phase ([\d.]+) "
                      r"\(runs' own time summed: ([\d.]+)\)", " ".join(sweep_out.split()))
    if found is None:
        sys.exit(f"could not read the sweep's timings:\n{sweep_out}")
    jobs, sweep_startup, sweep_load, sweep_phase, sweep_runs = (float(v) for v in found.groups())
    if len(configs) != int(re.search(r"sweep: (\d+) run", sweep_out).group(1)):
        sys.exit("the sweep did not plan exactly the K configurations")

    startup = startup_seconds()
    load = cache_load_seconds(workdir, args.device)
    total = sum(separate)
    k = len(configs)
    print(f"\nsweep vs separate `ser train` processes — K = {k} configurations, fold {args.fold}, "
          f"epochs {args.epochs or 'default (paper recipe)'}, device {args.device}, workspace {workdir}")
    print(f"{'':32}{'separate':>12}{'sweep':>12}")
    print(f"{'wall time (s)':32}{total:12.1f}{sweep_wall:12.1f}")
    print(f"{'  start-up (imports) (s)':32}{k * startup:12.1f}{sweep_startup:12.1f}   ({startup:.2f} s per process)")
    print(f"{'  cache loading (s)':32}{k * load:12.2f}{sweep_load:12.2f}   ({load:.3f} s per load)")
    print(f"{'  training (s)':32}{total - k * (startup + load):12.1f}{sweep_phase:12.1f}   "
          f"(sweep: {int(jobs)} jobs, runs' own time summed {sweep_runs:.1f} s, worker start-up included)")
    print(f"ratio sweep / separate = {sweep_wall / total:.3f}   (target <= 0.5 on CPU, <= 0.25 on GPU)")


if __name__ == "__main__":
    main()
