"""Real-size caches: writing, loading, streaming and training on an IEMOCAP-shaped wavlm-base cache.

Builds a workspace whose cache has IEMOCAP's shape (5,531 utterances, mean ≈ 4.5 s, log-normal
between 0.6 and 35 s, 5 sessions × 2 speakers, 4 classes) with wavlm-base's layout (13 × 768
float16 per frame, 50 frames/s) and random features, written by the real writer
(ShardedCacheWriter: shards, then the merge). `--size quarter` keeps a quarter of the
utterances (≈ 6 GB), `--size full` all of them (≈ 25 GB, ≈ 50 GB while the shards are merged).
Then each arm runs in its own process (its peak RSS is that process's ru_maxrss), set up as `ser`
sets up its own (OpenMP's brief waits, freed blocks kept: ser/cli/__init__.py), with the page
cache dropped before it when this process may (`echo 3 > /proc/sys/vm/drop_caches`, root);
otherwise the printout says "warm":
  write        the writer's rate (shards, then merge), MB/s of feature bytes (in its own process too:
               a child's peak RSS counts the parent's pages it was forked with);
  seq-read     a plain sequential read of the cache file in 16 MiB blocks, through the page cache
               (on 2 shared cores bound by the kernel's CPU as much as by the disk: 17-50 s of
               system time per full-size pass);
  load         `ser train`'s in-memory load (all layers, and --layers 8-12);
  stream-read  one pass of streamed batches over every utterance (length-bucketed, 32 a batch), no
               training: the rate the streamed path delivers over the features the plain read
               reads too (all layers, and 8-12). Its MB/s count stored (fp16) feature bytes, and
               the plain read's count the whole file (features, their checksums, pooled
               statistics, index: 1-2% more);
  train        `--steps N` ShiftCNN steps of fold 1 (batch 32, length-bucketed, one warm-up step
               first), in memory and streamed, all layers and 8-12. A full epoch at D=768 over
               ≈ 3,500 training clips takes long on 2 CPUs, so the benchmark times N steps and
               reports the median step and the epoch extrapolated from it (steps per epoch ×
               median step; dev/test passes not included);
  probe        `ser probe` over the 13 layers (pooled statistics only).
Ratios are printed side by side at the end. The workspace stays under --scratch unless --clean.

    python benchmarks/scale.py --size quarter [--steps 6] [--scratch /work/scale-scratch] [--device cuda] [--clean]
    python benchmarks/scale.py --size full --arms write,seq-read,stream-read,train-stream
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

UTTERANCES = 5_531  # IEMOCAP's utterances (the scripted and improvised sessions)
MEAN_SECONDS, MIN_SECONDS, MAX_SECONDS = 4.5, 0.6, 35.0
LAYERS, DIM, FRAME_RATE = 13, 768, 50.0  # wavlm-base
SIZES = {"tiny": 0.02, "quarter": 0.25, "full": 1.0}  # tiny: checks the script itself
LABELS = ("ang", "hap", "neu", "sad")
ARMS = ("write", "seq-read", "load", "stream-read", "train-ram", "train-stream", "probe")
TOP_LAYERS = "8-12"
MB = 1e6


def durations(count: int, seed: int = 0) -> np.ndarray:
    """`count` log-normal clip lengths in seconds, clipped to [0.6, 35] and scaled to mean 4.5 s."""
    rng = np.random.default_rng(seed)
    seconds = rng.lognormal(np.log(MEAN_SECONDS) - 0.5 * 0.7**2, 0.7, count)
    for _ in range(5):  # clipping moves the mean: rescale and clip again
        seconds = np.clip(seconds * MEAN_SECONDS / seconds.mean(), MIN_SECONDS, MAX_SECONDS)
    return seconds


def write_workspace(root: Path, size: str, shard_mb: float = 256.0) -> dict:
    """manifests/iemocap.csv + cache/iemocap/wavlm-base.h5 under `root`; returns the write timings."""
    import pandas as pd

    from ser.data.manifest import manifest_sha256, read_manifest, write_manifest
    from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures
    from ser.features.extract import cache_identity

    count = round(UTTERANCES * SIZES[size])
    seconds = durations(count)
    frames = np.maximum(1, np.round(seconds * FRAME_RATE).astype(np.int64))
    rng = np.random.default_rng(1)
    sessions = np.arange(count) % 5 + 1
    rows = pd.DataFrame({
        "id": [f"Ses{s:02d}{'FM'[i // 5 % 2]}_{i:05d}" for i, s in enumerate(sessions)],
        "path": [f"audio/{i:05d}.wav" for i in range(count)],
        "label": rng.choice(LABELS, count), "session": [f"Ses{s:02d}" for s in sessions],
        "speaker": [f"Ses{s:02d}{'FM'[i // 5 % 2]}" for i, s in enumerate(sessions)], "duration": seconds,
    })
    manifest = root / "manifests" / "iemocap.csv"
    write_manifest(rows, manifest)
    rows = read_manifest(manifest)
    out = root / "cache" / "iemocap" / "wavlm-base.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    attrs = dict(cache_identity("microsoft/wavlm-base", True, None, None, manifest_sha256(rows)),
                 model="wavlm-base", revision="benchmark", transformers_version="none", sample_rate=16000,
                 frame_rate=FRAME_RATE, num_layers=LAYERS, dim=DIM, dtype="float16", model_num_layers=LAYERS,
                 batching="benchmark")
    pool = rng.standard_normal(1 << 25, dtype=np.float32).astype(np.float16)  # 64 MiB of features to cut views from
    writer = ShardedCacheWriter(out, attrs, overwrite=True)
    shard, shard_bytes, written, writing = [], 0, 0, 0.0
    for utt, length in zip(rows["id"], frames):
        size_values = LAYERS * int(length) * DIM
        start = int(rng.integers(0, len(pool) - size_values))
        block = pool[start : start + size_values].reshape(LAYERS, int(length), DIM)  # (L, T, D)
        pooled = rng.standard_normal((LAYERS, 2, DIM), dtype=np.float32)  # (L, 2, D)
        shard.append(UtteranceFeatures(utt, block, pooled))
        shard_bytes += block.nbytes
        if shard_bytes >= shard_mb * MB:
            began = time.perf_counter()
            writer.write_shard(shard)
            writing += time.perf_counter() - began
            written += shard_bytes
            shard, shard_bytes = [], 0
    began = time.perf_counter()
    writer.write_shard(shard)
    writing += time.perf_counter() - began
    written += shard_bytes
    began = time.perf_counter()
    writer.finish(list(rows["id"]), {}, {"num_utterances": count})
    merging = time.perf_counter() - began
    return {"utterances": count, "feature_bytes": written, "file_bytes": out.stat().st_size, "shards_s": writing,
            "merge_s": merging, "hours": float(frames.sum() / FRAME_RATE / 3600)}


def drop_page_cache() -> bool:
    """Whether the page cache could be dropped (root on Linux)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def parse_layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def fold_one(data):
    """Fold 1 (test Ses01) of the session protocol, as `ser train --folds session --fold 1` makes it."""
    from ser.training.config import TrainConfig
    from ser.training.protocol import protocol_folds

    return protocol_folds(TrainConfig.create("shiftcnn", folds="session"), data)[0]


def arm(args) -> dict:
    """One measurement in this (child) process: returns its figures."""
    root = Path(args.workdir)
    cache = root / "cache" / "iemocap" / "wavlm-base.h5"
    manifest = root / "manifests" / "iemocap.csv"
    layers = parse_layers(args.layers)
    if args.arm == "write":
        return write_workspace(root, args.size)
    if args.arm == "seq-read":
        began, total = time.perf_counter(), 0
        with open(cache, "rb", buffering=0) as handle:
            while block := handle.read(16 << 20):
                total += len(block)
        return {"bytes": total, "seconds": time.perf_counter() - began}
    if args.arm == "probe":
        from ser.studies.probe_study import write_probe
        from ser.training.probe import ProbeProtocol

        began = time.perf_counter()
        write_probe(root, ProbeProtocol(folds="session"), out=root / "runs" / "probe")
        return {"seconds": time.perf_counter() - began}

    import torch

    from ser.training.loading import load_training_data

    began = time.perf_counter()
    data = load_training_data(manifest, cache, layers=layers, device=args.device,
                              stream=args.arm not in ("load", "train-ram"))
    loaded = time.perf_counter() - began
    from ser.training.batching import bucketed_batches

    size = int(data.lengths.sum()) * data.num_layers * data.dim * 2  # the stored features (of the layers asked for)
    if args.arm == "load":
        return {"seconds": loaded, "bytes": size}
    if args.arm == "stream-read":  # every utterance once: the features the plain read reads too
        every = np.arange(len(data.ids))
        batch_rows = [every[b] for b in bucketed_batches(data.lengths, 32, seed=0, epoch=0)]
        began = time.perf_counter()
        for x, _, _ in data.batches(batch_rows):
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
        return {"seconds": time.perf_counter() - began, "bytes": size, "batches": len(batch_rows)}
    train_rows = data.positions(fold_one(data).train)
    batch_rows = [train_rows[b] for b in bucketed_batches(data.lengths[train_rows], 32, seed=0, epoch=0)]

    from ser.heads import create_head
    from ser.training.recipes import build_optimizer, recipe_for

    torch.manual_seed(0)
    head = create_head("shiftcnn", data.dim, data.num_layers, 4).to(data.device)
    optimizer = build_optimizer(head, recipe_for("shiftcnn"))
    head.train()
    times, began = [], time.perf_counter()
    for x, lengths, targets in data.batches(batch_rows[: args.steps + 1]):
        loss = torch.nn.functional.cross_entropy(head(x, lengths), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if data.device.type == "cuda":
            torch.cuda.synchronize(data.device)
        times.append(time.perf_counter() - began)  # includes the wait for the batch
        began = time.perf_counter()
    step = statistics.median(times[1:])
    return {"load_s": loaded, "step_s": step, "steps_per_epoch": len(batch_rows),
            "epoch_s": step * len(batch_rows), "steps": len(times) - 1}


def run_arm(args, name: str, layers: str | None = None) -> dict:
    """`name` in a child process after dropping the page cache: its figures, peak RSS and cold/warm."""
    cold = drop_page_cache()
    command = [sys.executable, __file__, "--child", name, "--workdir", str(args.workdir), "--steps", str(args.steps),
               "--device", args.device, "--size", args.size]
    if layers:
        command += ["--layers", layers]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        return {"failed": child.returncode}
    result = json.loads(output.strip().splitlines()[-1])
    return {**result, "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9, "cold": cold}


def rate(result: dict) -> str:
    return f"{result['bytes'] / MB / result['seconds']:.0f} MB/s" if "bytes" in result else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="quarter")
    parser.add_argument("--steps", type=int, default=6, help="ShiftCNN steps timed per training arm (after a warm-up).")
    parser.add_argument("--scratch", type=Path, default=Path("/work/scale-scratch"))
    parser.add_argument("--device", default="cpu", help="Training device of the load, stream and train arms.")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"Comma-separated subset of {','.join(ARMS)}.")
    parser.add_argument("--clean", action="store_true", help="Delete the workspace at the end.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--layers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from ser.training.allocator import keep_freed_blocks
        from ser.training.threads import prefer_brief_waits

        prefer_brief_waits()  # the process as `ser` sets it up (ser/cli/__init__.py), before torch is imported
        keep_freed_blocks()
        args.arm = args.child
        print(json.dumps(arm(args)))
        return
    args.workdir = args.scratch / args.size
    arms = args.arms.split(",")
    cache = args.workdir / "cache" / "iemocap" / "wavlm-base.h5"
    results: dict[str, dict] = {}
    if "write" in arms or not cache.is_file():
        shutil.rmtree(args.workdir, ignore_errors=True)
        written = run_arm(args, "write")  # in a child too: the arms' peak RSS must not start from the writer's
        if "failed" in written:
            raise SystemExit(f"scale.py: writing the {args.size} cache failed (exit code {written['failed']}); "
                             "its error is printed above")
        total = written["shards_s"] + written["merge_s"]
        print(f"write: {written['utterances']} utterances, {written['hours']:.1f} h, {written['feature_bytes'] / 1e9:.2f} GB "
              f"of features, file {written['file_bytes'] / 1e9:.2f} GB; shards {written['shards_s']:.1f} s "
              f"({written['feature_bytes'] / MB / written['shards_s']:.0f} MB/s), merge {written['merge_s']:.1f} s "
              f"({written['file_bytes'] / MB / written['merge_s']:.0f} MB/s), overall "
              f"{written['feature_bytes'] / MB / total:.0f} MB/s", flush=True)
    plan = [("seq-read", None), ("load", None), ("load", TOP_LAYERS), ("stream-read", None),
            ("stream-read", TOP_LAYERS), ("train-ram", None), ("train-stream", None), ("train-ram", TOP_LAYERS),
            ("train-stream", TOP_LAYERS), ("probe", None)]
    for name, layers in plan:
        if name not in arms:
            continue
        key = name + (f" {layers}" if layers else "")
        results[key] = run_arm(args, name, layers)
        result = results[key]
        state = "cold" if result.get("cold") else "warm"
        if "failed" in result:
            print(f"{key:<22} failed with exit code {result['failed']}", flush=True)
            continue
        figures = (f"step {result['step_s']:.2f} s, epoch ≈ {result['epoch_s'] / 60:.1f} min "
                   f"({result['steps_per_epoch']} steps; load {result['load_s']:.1f} s)" if "step_s" in result
                   else f"{result['seconds']:.1f} s, {rate(result)}")
        print(f"{key:<22} {figures}; peak RSS {result['peak_rss_gb']:.2f} GB ({state})", flush=True)
    ratios = [("stream-read / seq-read (rate)", "stream-read", "seq-read", "rate"),
              ("stream-read 8-12 / all (time)", f"stream-read {TOP_LAYERS}", "stream-read", "seconds"),
              ("load / seq-read (rate)", "load", "seq-read", "rate"),
              ("streamed / in-memory step", "train-stream", "train-ram", "step_s"),
              ("streamed / in-memory step, 8-12", f"train-stream {TOP_LAYERS}", f"train-ram {TOP_LAYERS}", "step_s"),
              ("8-12 / all layers step, in memory", f"train-ram {TOP_LAYERS}", "train-ram", "step_s"),
              ("peak RSS streamed / in memory", "train-stream", "train-ram", "peak_rss_gb")]
    print("ratios:")
    for label, top, bottom, field in ratios:
        a, b = results.get(top, {}), results.get(bottom, {})
        if "failed" in a or "failed" in b or not a or not b:
            continue
        value = ((a["bytes"] / a["seconds"]) / (b["bytes"] / b["seconds"]) if field == "rate" else a[field] / b[field])
        print(f"  {label:<36} {value:.2f}")
    if args.clean:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
