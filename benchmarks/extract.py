"""Extraction overhead: (full extraction wall time) / (bare model forward time on the same audio).

Uses the real wavlm-base architecture with random weights (no download) on synthetic clips.
Prints three figures:
  - loop ratio: `features.extract` (decode + forward + HDF5 shards + merge; model loaded) / bare forward
    — the target is <= 1.10;
  - CLI ratio: a `ser extract --random-init` subprocess (also Python start-up, imports and building
    the model) / bare forward;
  - cache size per second of audio.
With `--nproc N` it instead times `ser extract` in one process against the same command under
`torchrun --nproc-per-node N` (start-up included in both), prints the speed-up and checks that
how far apart the two caches are (bit for bit equal at equal thread counts).

    python benchmarks/extract.py [--seconds 64] [--clip 4] [--model wavlm-base] [--rounds 3] [--nproc 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def write_corpus(root: Path, seconds: float, clip: float) -> Path:
    """Synthetic clips of `clip` seconds (lengths jittered) and a manifest."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    (root / "manifests").mkdir()
    rows, total, i = ["id,path"], 0.0, 0
    while total < seconds:
        length = clip * (0.8 + 0.4 * rng.random())
        sf.write(root / "audio" / f"c{i}.wav", 0.1 * rng.standard_normal(int(length * 16000)), 16000)
        rows.append(f"c{i},../audio/c{i}.wav")
        total, i = total + length, i + 1
    (root / "manifests" / "bench.csv").write_text("\n".join(rows) + "\n")
    return root / "manifests" / "bench.csv"


def bare_forward_seconds(model: torch.nn.Module, waves: list[np.ndarray]) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for wave in waves:
            model(torch.from_numpy(wave)[None], output_hidden_states=True)
    return time.perf_counter() - started


def cli_extract_seconds(launcher: list[str], model: str, root: Path, out: Path) -> float:
    """Wall time of one `ser extract --random-init` run (launcher: python, or torchrun)."""
    started = time.perf_counter()
    run = subprocess.run([*launcher, "-m", "ser.cli", "extract", "--model", model, "--random-init", "--device", "cpu",
                          "--workdir", str(root), "--out", str(out)], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(run.stderr[-3000:])
    return time.perf_counter() - started


def largest_difference(a: Path, b: Path) -> float:
    """max |a - b| over every feature of two caches of the same utterances (0.0: bitwise equal)."""
    from ser.features.cache import CacheReader

    with CacheReader(a) as left, CacheReader(b) as right:
        assert left.ids == right.ids
        return max(float(np.abs(left.read(u).astype(np.float64) - right.read(u)).max()) for u in left.ids)


def compare_processes(args: argparse.Namespace) -> None:
    """One process against `args.nproc` torchrun ranks, alternating rounds, best of each."""
    launchers = {1: [sys.executable], args.nproc: [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc-per-node", str(args.nproc)]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_corpus(root, args.seconds, args.clip)
        rounds: dict[int, list[float]] = {1: [], args.nproc: []}
        for round_index in range(args.rounds):
            for processes, launcher in launchers.items():
                out = root / f"p{processes}-r{round_index}.h5"
                rounds[processes].append(cli_extract_seconds(launcher, args.model, root, out))
        one, many = min(rounds[1]), min(rounds[args.nproc])
        difference = largest_difference(root / "p1-r0.h5", root / f"p{args.nproc}-r0.h5")
    print(f"audio: {args.seconds:.0f} s in ~{args.clip:.0f}-s clips; model {args.model} (random init); "
          f"{os.cpu_count()} CPUs; best of {args.rounds} alternating rounds, start-up included")
    print(f"ser extract, 1 process ({torch.get_num_threads()} threads):  {one:7.2f} s")
    print(f"torchrun --nproc-per-node {args.nproc} (1 thread each): {many:7.2f} s")
    print(f"speed-up with {args.nproc} processes: {one / many:.2f}x")
    print("caches: " + ("bitwise identical" if difference == 0 else f"max |difference| {difference:.2e} (CPU kernels "
                        f"round differently with {torch.get_num_threads()} threads than with 1; equal thread counts "
                        "give identical caches)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=64.0, help="total audio")
    parser.add_argument("--clip", type=float, default=4.0, help="mean clip length in seconds")
    parser.add_argument("--model", default="wavlm-base")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/extract rounds")
    parser.add_argument("--nproc", type=int, default=1, help="compare 1 process with N torchrun ranks instead")
    args = parser.parse_args()
    if args.nproc > 1:
        compare_processes(args)
        return

    from ser.data.manifest import manifest_sha256, read_manifest, utterance_records
    from ser.features.audio import load_audio
    from ser.features.backbones import load_backbone
    from ser.features.extract import extract

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = write_corpus(root, args.seconds, args.clip)
        df = read_manifest(manifest)
        records = utterance_records(df, manifest)
        waves = [load_audio(record) for record in records]
        audio_seconds = sum(len(w) for w in waves) / 16000
        backbone = load_backbone(args.model, random_init=True, device="cpu")
        bare_forward_seconds(backbone.model, waves[:1])  # warm-up
        # Alternate the two measurements so that load from other processes hits both alike;
        # the best round of each is the least disturbed one.
        bare_rounds, loop_rounds = [], []
        for round_index in range(args.rounds):
            bare_rounds.append(bare_forward_seconds(backbone.model, waves))
            loop = extract(records, backbone, root / f"loop{round_index}.h5", manifest_sha256=manifest_sha256(df))
            loop_rounds.append(loop.wall_seconds)
        bare = min(bare_rounds)
        started = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "-c", "from ser.cli import run; run()", "extract", "--model", args.model,
             "--random-init", "--device", "cpu", "--workdir", str(root)],
            capture_output=True, text=True,
        )
        cli_seconds = time.perf_counter() - started
        if cli.returncode != 0:
            sys.exit(cli.stderr)
        print(f"audio: {len(waves)} clips, {audio_seconds:.1f} s; model {args.model} (random init), "
              f"{torch.get_num_threads()} CPU threads")
        print(f"bare forward:        {bare:7.2f} s  (RTF {bare / audio_seconds:.3f})")
        print(f"extract loop:        {min(loop_rounds):7.2f} s  ratio {min(loop_rounds) / bare:.3f}  (target <= 1.10; "
              f"best of {args.rounds} alternating rounds; per round: "
              f"{', '.join(f'{l / b:.2f}' for l, b in zip(loop_rounds, bare_rounds))})")
        print(f"ser extract (CLI):   {cli_seconds:7.2f} s  ratio {cli_seconds / bare:.3f}  (incl. start-up and model build)")
        print(f"cache size:          {loop.cache_bytes / audio_seconds / 2**20:.3f} MiB per second of audio "
              f"({loop.cache_bytes / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
