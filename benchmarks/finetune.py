"""What caching the frozen CNN encoder saves in fine-tuning, and what fine-tuning costs against
training a head on cached hidden states.

On a few short clips of the synthetic corpus with the wavlm-base architecture (random weights),
prints, measured side by side in one run (epochs interleaved, so both see the same machine load):
  (a) one fine-tuning epoch from raw audio ÷ one from the cached CNN output (`--conv-cache`);
  (b) one fine-tuning epoch from the cached CNN output ÷ one head epoch on cached hidden states
      (`ser train`'s setting: the backbone frozen and never run);
plus the one-off cost of building the CNN cache, in raw-audio epochs.

    python benchmarks/finetune.py [--utterances-per-class 1] [--max-seconds 1.5] [--head shiftcnn]
                                  [--batch-size 4] [--repeats 2] [--device cpu]
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
from ser.data.workspace import Workspace
from ser.heads import create_head
from ser.training.adam import Adam
from ser.training.batching import bucketed_batches
from ser.finetune.config import FinetuneConfig
from ser.finetune.conv_cache import build_conv_cache, conv_cache_path
from ser.finetune.data import load_finetune_data, resolve_batching
from ser.finetune.loop import _train_step
from ser.finetune.model import build_finetune_model, load_speech_backbone
from ser.training.loading import load_training_data
from ser.training.recipes import build_optimizer, recipe_for


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances-per-class", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=1.5)
    parser.add_argument("--head", default="shiftcnn")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="Epochs timed per setting (the median is reported).")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        workspace = Workspace(root)
        manifest = workspace.manifest_for("synthetic")
        prepare_corpus(CORPORA.get("synthetic"), root / "audio", manifest,
                       {"speakers": 2, "sessions": 1, "per_class": args.utterances_per_class})
        config = FinetuneConfig.create("wavlm-base", args.head, random_init=True, batch_size=args.batch_size,
                                       max_seconds=args.max_seconds)
        pristine = load_speech_backbone("wavlm-base", True, False, str(device), config.recipe.layerdrop)
        started = time.perf_counter()
        conv_path = build_conv_cache(manifest, pristine, conv_cache_path(workspace, "synthetic", "wavlm-base", True,
                                                                          args.max_seconds), args.max_seconds)
        conv_build_s = time.perf_counter() - started
        raw = load_finetune_data(manifest, "categorical", pristine.num_frames, args.max_seconds)
        conv = load_finetune_data(manifest, "categorical", pristine.num_frames, args.max_seconds, conv_path)
        rows = np.arange(len(raw.ids))
        batches = [rows[b] for b in bucketed_batches(raw.frames, args.batch_size, seed=0, epoch=0)]

        def finetune_epoch(data) -> float:
            model = build_finetune_model(config, pristine, data.task.num_outputs)
            batching = resolve_batching("auto", data.conv_cache is not None, model)
            groups = model.parameter_groups(config.recipe.lr, config.recipe.backbone_lr, 0.0)
            optimizer = Adam(groups, lr=config.recipe.lr)  # the optimiser `ser finetune` trains with
            model.train()
            synchronize(device)
            begin = time.perf_counter()
            for batch in batches:
                _train_step(model, optimizer, data.task, data, batch, batching, config, device)
            synchronize(device)
            return time.perf_counter() - begin

        summary = extract_corpus(root, "wavlm-base", random_init=True, device=args.device, max_seconds=args.max_seconds)
        cached = load_training_data(manifest, summary.cache_path, device=args.device)
        head = create_head(args.head, cached.dim, cached.num_layers, cached.task.num_outputs).to(device)
        optimizer = build_optimizer(head, recipe_for(args.head))

        def head_epoch() -> float:
            head.train()
            synchronize(device)
            begin = time.perf_counter()
            for x, lengths, targets in cached.batches(batches):
                loss = torch.nn.functional.cross_entropy(head(x, lengths), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            synchronize(device)
            return time.perf_counter() - begin

        head_epoch()  # warm-up
        timings: dict[str, list[float]] = {"raw": [], "conv": [], "head": []}
        for _ in range(args.repeats):
            timings["raw"].append(finetune_epoch(raw))
            timings["conv"].append(finetune_epoch(conv))
            timings["head"].append(head_epoch())
        raw_s, conv_s, head_s = (float(np.median(timings[name])) for name in ("raw", "conv", "head"))

    audio_s = float(sum(raw.frames)) / pristine.frame_rate
    print(f"{len(rows)} clips ({audio_s:.1f} s of audio, ≤ {args.max_seconds:g} s each), wavlm-base random init, "
          f"{args.head}, batch {args.batch_size}, device {args.device}, {torch.get_num_threads()} threads")
    print(f"  fine-tuning epoch from raw audio:         {raw_s:8.2f} s")
    print(f"  fine-tuning epoch from the CNN cache:     {conv_s:8.2f} s")
    print(f"  head epoch on cached hidden states:       {head_s:8.2f} s")
    print(f"  building the CNN cache (once):            {conv_build_s:8.2f} s")
    print(f"(a) raw audio / CNN cache        = {raw_s / conv_s:.2f}×")
    print(f"(b) CNN cache / cached-head      = {conv_s / head_s:.1f}×")
    print(f"    raw audio / cached-head      = {raw_s / head_s:.1f}×")
    print(f"    CNN cache pays for itself after {conv_build_s / max(1e-9, raw_s - conv_s):.1f} epochs")


if __name__ == "__main__":
    main()
