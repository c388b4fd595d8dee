"""Training from the cache vs recomputing the frozen model, and the trainer's data-handling overhead.

On a wavlm-base-architecture cache (random weights, --random-init) of the synthetic corpus, prints:
  (a) one on-the-fly training epoch (the frozen backbone recomputed for every batch, the
      s3prl / ShiftSER way) ÷ one cached epoch (batches gathered from the in-memory cache);
  (b) one cached epoch ÷ the same head steps on batches already built in memory
      (the overhead of data handling; target ≤ 1.15).

    python benchmarks/train.py [--utterances-per-class 3] [--head shiftcnn] [--batch-size 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ser.data.corpora import CORPORA, prepare_corpus
from ser.data.extraction import extract_corpus
from ser.data.manifest import read_manifest, utterance_records
from ser.features.audio import load_audio
from ser.features.backbones import load_backbone
from ser.heads import create_head
from ser.training.batching import bucketed_batches
from ser.training.loading import load_training_data
from ser.training.recipes import build_optimizer, recipe_for


def step(head, optimizer, task_loss, x, lengths, targets) -> None:
    loss = task_loss(head(x, lengths), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances-per-class", type=int, default=3)
    parser.add_argument("--head", default="shiftcnn")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="Cached epochs timed (the median is reported).")
    args = parser.parse_args()
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest = root / "manifests" / "synthetic.csv"
        options = {"speakers": 2, "sessions": 1, "per_class": args.utterances_per_class}
        prepare_corpus(CORPORA.get("synthetic"), root / "audio", manifest, options)
        started = time.perf_counter()
        summary = extract_corpus(root, "wavlm-base", random_init=True, device=args.device)
        print(f"extracted {summary.extracted} utterances with wavlm-base (random init) in "
              f"{time.perf_counter() - started:.1f} s")
        data = load_training_data(manifest, summary.cache_path, device=args.device)
        records = {r.id: r for r in utterance_records(read_manifest(manifest), manifest)}
        rows = np.arange(len(data.ids))
        batches = [rows[b] for b in bucketed_batches(data.lengths, args.batch_size, seed=0, epoch=0)]
        loss = torch.nn.functional.cross_entropy

        torch.manual_seed(0)
        head = create_head(args.head, data.dim, data.num_layers, data.task.num_outputs).to(device)
        optimizer = build_optimizer(head, recipe_for(args.head))
        head.train()
        for x, lengths, targets in data.batches(batches[:2]):  # warm-up
            step(head, optimizer, loss, x, lengths, targets)

        def cached_epoch() -> float:
            synchronize(device)
            begin = time.perf_counter()
            for x, lengths, targets in data.batches(batches):
                step(head, optimizer, loss, x, lengths, targets)
            synchronize(device)
            return time.perf_counter() - begin

        prebuilt = list(data.batches(batches))

        def head_only_epoch() -> float:
            synchronize(device)
            begin = time.perf_counter()
            for x, lengths, targets in prebuilt:
                step(head, optimizer, loss, x, lengths, targets)
            synchronize(device)
            return time.perf_counter() - begin

        cached, head_only = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            cached.append(cached_epoch())
            head_only.append(head_only_epoch())
        cached_s, head_s = float(np.median(cached)), float(np.median(head_only))

        backbone = load_backbone("wavlm-base", random_init=True, device=args.device)
        synchronize(device)
        begin = time.perf_counter()
        for batch_rows in batches:
            features = []
            for row in batch_rows:
                wave = load_audio(records[data.ids[row]])
                features.append(torch.from_numpy(backbone.forward([wave])[0]))  # (L, T, D)
            lengths = torch.tensor([f.shape[1] for f in features])
            x = torch.zeros(len(features), data.num_layers, int(lengths.max()), data.dim)  # (B, L, T, D)
            for i, f in enumerate(features):
                x[i, :, : f.shape[1]] = f
            targets = data.targets[torch.from_numpy(batch_rows).to(data.device)]
            step(head, optimizer, loss, x.to(device), lengths.to(device), targets)
        synchronize(device)
        on_the_fly_s = time.perf_counter() - begin

    print(f"{len(rows)} utterances, {args.head}, batch {args.batch_size}, device {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"  on-the-fly epoch (backbone every batch): {on_the_fly_s:8.2f} s")
    print(f"  cached epoch (in-memory cache):           {cached_s:8.2f} s")
    print(f"  head compute only (batches prebuilt):     {head_s:8.2f} s")
    print(f"(a) on-the-fly / cached = {on_the_fly_s / cached_s:.1f}×")
    print(f"(b) cached / head-only  = {cached_s / head_s:.3f} (target ≤ 1.15)")


if __name__ == "__main__":
    main()
