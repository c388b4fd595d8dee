"""Milliseconds per training step of every head: masked vs unmasked, idle vs a busy machine, thread settings.

For each head at D=80 (an fbank cache: 1 layer) and D=768 (a wavlm-base cache: 13 layers), batch
32 × 250 frames, one training step (forward, loss, backward, optimiser step) is timed:
  masked     utterance lengths spread over [T/2, T] (the heads mask their padding);
  unmasked   the same head with the padding helpers of ser.heads replaced by their no-mask
             versions (identity, plain mean, flip, a plain nn.LSTM call, plain BatchNorm;
             measured here only, never used in training).
Each setting runs in its own process (OpenMP reads its wait policy once, at import):
  default    what `ser` commands do: threads = CPUs this process may use, OMP_WAIT_POLICY=PASSIVE;
  active     the same threads, libgomp's spinning default (OMP_WAIT_POLICY=ACTIVE);
  1 thread   PASSIVE, one intra-op thread.
"busy" runs the same measurements while two background processes spin on the CPU (they stop
by themselves after --busy-seconds at most). Every ratio is measured side by side in one run.

    python benchmarks/heads.py                       # every head, both dims (minutes on 2 cores)
    python benchmarks/heads.py --heads shiftcnn,timnet --dims 80 --steps 3

Findings, 2 cores:
- 2026-12-01, background load average 5-11, `--dims 80 --steps 1`: ACTIVE (spinning) waits are
  the collapse. With 2 threads a step took 2-15x longer than with PASSIVE (timnet 13.6 s vs
  1.3 s, lstm 59 s vs 5.6 s), so PASSIVE is the default. 1 thread was the steadiest under extra
  load (busy/idle 0.7-1.2 for every head).
- Inter-op threads: not measured; a training step starts no inter-op work (no torch.jit.fork).
- 2026-12-01, idle machine, 2 threads PASSIVE, median of 5 steps, masked/unmasked at D=80 / D=768
  (after heads/lstm.py's dense LSTM, timnet's index-gathered BatchNorm, masking.masked_mean as
  one product): linear 1.03 / 1.04, cnn 1.05 / 1.03, shiftcnn 1.07 / 0.98, lstm 1.07 / 0.97,
  shiftlstm 1.13 / 1.04, transformer 1.06 / 0.96, shiftformer 0.97 / 1.06, timnet 1.47 / 1.66
  (1.28 / 1.32 in a quieter run), ctarnn 1.08 / 1.22 (0.95 earlier). Before: the LSTM heads were
  4-13x (packed sequences), timnet 1.85 / 1.60, linear 1.70 / 1.55. TIM-Net is still over 1.2x:
  gathering and scattering the real frames of 32 small norms per step.
- The same day, `--steps 1 --settings default`, busy/idle (2 spinning processes) at D=80 / D=768
  (before the LSTM and TIM-Net changes): linear 1.55 / 1.76, cnn 1.97 / 1.82, shiftcnn
  1.85 / 1.98, lstm 1.39 / 2.62, shiftlstm 1.37 / 1.93, transformer 2.13 / 1.98, shiftformer
  3.14 / 2.28, timnet 2.98 / 3.23, ctarnn 1.66 / 2.42. Two threads sharing two cores with two
  busy processes get about half the CPU, so ~2x is the floor of that setting; one thread under
  the same load was not better overall (cnn 1.8x, timnet 1.8x, shiftformer 2.2x of the idle
  two-thread step), nor was a short spin (GOMP_SPINCOUNT=10000) instead of PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {"default": ("PASSIVE", None), "active": ("ACTIVE", None), "1 thread": ("PASSIVE", 1)}
HEADS = ("linear", "cnn", "shiftcnn", "lstm", "shiftlstm", "transformer", "shiftformer", "timnet", "ctarnn")
BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def unmask_heads() -> None:
    """Replace the padding helpers every head module imported with versions that ignore lengths."""
    import torch

    import ser.heads as package
    from ser.heads import masking

    def zero_padding(x, lengths):
        return x

    def masked_mean(x, lengths):
        return x.mean(dim=1)

    def frame_mask(lengths, max_len):
        return torch.ones(len(lengths), max_len, dtype=torch.bool, device=lengths.device)

    def reverse_within_lengths(x, lengths):
        return x.flip(1)

    def run_lstm_over_lengths(lstm, x, lengths):
        return lstm(x)[0]

    def plain_batch_norm(self, x, real):
        return torch.nn.BatchNorm1d.forward(self, x)

    replacements = {"zero_padding": zero_padding, "masked_mean": masked_mean, "frame_mask": frame_mask,
                    "reverse_within_lengths": reverse_within_lengths, "run_lstm_over_lengths": run_lstm_over_lengths}
    from ser.heads.timnet import MaskedBatchNorm1d

    MaskedBatchNorm1d.forward = plain_batch_norm
    for name, module in list(sys.modules.items()):
        if name.startswith(package.__name__ + ".") or module is masking:
            for attribute, function in replacements.items():
                if hasattr(module, attribute):
                    setattr(module, attribute, function)


def measure(heads: list[str], dims: list[int], steps: int, masked: bool) -> dict[str, float]:
    """{"head@D": ms per training step} in this process."""
    import torch

    from ser.heads import create_head
    from ser.training.recipes import build_optimizer, recipe_for

    if not masked:
        unmask_heads()
    results = {}
    for dim in dims:
        layers = 1 if dim == 80 else 13
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(32, layers, 250, dim, generator=generator)  # (B, L, T, D)
        lengths = torch.randint(125, 251, (32,), generator=generator) if masked else torch.full((32,), 250)
        targets = torch.randint(0, 4, (32,), generator=generator)
        for name in heads:
            torch.manual_seed(0)
            head = create_head(name, dim, layers, 4)
            optimizer = build_optimizer(head, recipe_for(name))
            times = []
            for repeat in range(steps + 1):  # the first step warms up
                started = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(head(x, lengths), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if repeat:
                    times.append(time.perf_counter() - started)
            results[f"{name}@{dim}"] = 1000 * sorted(times)[len(times) // 2]
    return results


def child(setting: str, heads: list[str], dims: list[int], steps: int) -> dict:
    """Run `measure` for masked and unmasked in a fresh process with the setting's OpenMP policy."""
    policy, threads = SETTINGS[setting]
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    code = ("import json, sys, torch\n"
            "sys.path.insert(0, 'benchmarks')\n"
            "from heads import measure\n"
            "from ser.training.threads import use_threads\n"
            f"use_threads({threads!r})\n"
            f"print(json.dumps({{m: measure({heads!r}, {dims!r}, {steps}, m == 'masked') "
            f"for m in ('masked', 'unmasked')}}))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"measurement failed ({setting}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {setting}: {result}", file=sys.stderr, flush=True)  # as it comes: the whole run takes long
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--dims", default="80,768")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per head (median), after one warm-up")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--busy-seconds", type=int, default=1800, help="the background load stops after this at most")
    args = parser.parse_args()
    heads, dims = args.heads.split(","), [int(d) for d in args.dims.split(",")]
    settings = args.settings.split(",")

    from ser.training.threads import available_cpus

    table: dict[tuple[str, str], dict] = {}
    for setting in settings:
        table[(setting, "idle")] = child(setting, heads, dims, args.steps)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=args.busy_seconds)]) for _ in range(2)]
    try:
        for setting in settings:
            table[(setting, "busy")] = child(setting, heads, dims, args.steps)
    finally:
        for process in busy:
            process.kill()
            process.wait()

    print(f"ms per training step, B=32, T=250; {available_cpus()} CPUs available; load average before: "
          f"{os.getloadavg()[0]:.1f}; busy = 2 spinning background processes")
    columns = [(s, load, m) for s in settings for load in ("idle", "busy") for m in ("masked", "unmasked")]
    print(f"{'head@D':18}" + "".join(f"{s[:8] + ' ' + load + ' ' + m[:5]:>24}" for s, load, m in columns))
    for key in table[(settings[0], "idle")]["masked"]:
        print(f"{key:18}" + "".join(f"{table[(s, load)][m][key]:24.1f}" for s, load, m in columns))
    print("\nratios (per head): masked/unmasked idle · busy/idle masked, per setting")
    for key in table[(settings[0], "idle")]["masked"]:
        cells = []
        for s in settings:
            idle, loaded = table[(s, "idle")], table[(s, "busy")]
            cells.append(f"{s}: mask {idle['masked'][key] / idle['unmasked'][key]:.2f} "
                         f"busy {loaded['masked'][key] / idle['masked'][key]:.2f}")
        print(f"{key:18}" + "   ".join(cells))


if __name__ == "__main__":
    main()
