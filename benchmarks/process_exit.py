"""How long `ser` commands take with and without the interpreter's teardown at exit.

`python -m ser.cli` (and the `ser` script) end without freeing every module and object one by one
(ser/cli/process_exit.py); `python -c "from ser.cli import main; main()"` runs the same command
and exits the normal way. On a small synthetic fbank workspace, each command runs both ways,
taking turns, and the script prints the median wall seconds and their ratio. It also checks that
both ways wrote the same model (model.pt byte for byte).

    python benchmarks/process_exit.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAST = [sys.executable, "-m", "ser.cli"]
NORMAL = [sys.executable, "-c", "from ser.cli import main; main()"]


def seconds(command: list[str]) -> float:
    """Wall seconds of a command that must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(command)}\n{done.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command each way (medians reported)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        seconds([*FAST, "prepare", "synthetic", str(workdir / "data"), "--workdir", str(workdir), "--speakers", "4",
                 "--sessions", "2", "--per-class", "4"])
        seconds([*FAST, "extract", "--model", "fbank", "--workdir", str(workdir)])
        commands = {
            "ser list heads": ["list", "heads"],
            "ser train (1 epoch)": ["train", "--head", "shiftcnn", "--fold", "1", "--epochs", "1", "--model", "fbank",
                                    "--workdir", str(workdir), "--out"],
            "ser report": ["report", str(workdir / "normal")],
        }
        print(f"{'command':24}{'normal exit (s)':>17}{'no teardown (s)':>17}{'ratio':>8}")
        for name, command in commands.items():
            times: dict[str, list[float]] = {"normal": [], "fast": []}
            for repeat in range(args.repeats):
                for way, prefix in (("normal", NORMAL), ("fast", FAST)):
                    out = [str(workdir / way / str(repeat))] if command[-1] == "--out" else []  # a fresh run each time
                    times[way].append(seconds([*prefix, *command, *out]))
            normal, fast = statistics.median(times["normal"]), statistics.median(times["fast"])
            print(f"{name:24}{normal:17.2f}{fast:17.2f}{fast / normal:8.3f}", flush=True)
        models = [(workdir / way).rglob("model.pt") for way in ("normal", "fast")]
        same = all(a.read_bytes() == b.read_bytes() for a, b in zip(*(sorted(m) for m in models)))
        print(f"model.pt identical both ways: {same}")


if __name__ == "__main__":
    main()
