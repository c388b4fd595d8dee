"""Prediction overhead: `ser predict`'s path (extraction loop into a temporary cache, read back,
heads) / a bare in-memory pass (decode, forward, float16 rounding, head) on the same clips.

Uses the real wavlm-base architecture with random weights (no download) and a linear head built
from the registry; both sides load the model once, outside the timing. Prints the ratio (the
price of computing features by exactly `ser extract`'s code) and checks that both give the same
probabilities.

    python benchmarks/predict.py [--seconds 32] [--clip 4] [--model wavlm-base] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser.features.audio import load_audio
from ser.features.backbones import load_backbone
from ser.features.records import UtteranceRecord
from ser.heads import create_head
from ser.inference.predict import EmotionRecognizer
from ser.training.tasks import CategoricalTask
from ser.inference.trained_model import FoldModel, TrainedModel


def write_clips(root: Path, seconds: float, clip: float) -> list[UtteranceRecord]:
    rng = np.random.default_rng(0)
    records, total, i = [], 0.0, 0
    while total < seconds:
        length = clip * (0.8 + 0.4 * rng.random())
        path = root / f"c{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(length * 16000)), 16000)
        records.append(UtteranceRecord(f"c{i}", str(path)))
        total, i = total + length, i + 1
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=32.0)
    parser.add_argument("--clip", type=float, default=4.0)
    parser.add_argument("--model", default="wavlm-base")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = load_backbone(args.model, random_init=True, device="cpu")
    head = create_head("linear", backbone.dim, backbone.num_layers, 4).eval()
    task = CategoricalTask(("angry", "happy", "neutral", "sad"))
    fold = FoldModel("fold1", head, None, task, batch_size=64, spec=dict(head.constructor_kwargs))
    features = {"source": backbone.source, "model": args.model, "random_init": True, "num_layers": backbone.num_layers,
                "model_num_layers": backbone.num_layers, "dim": backbone.dim, "max_seconds": 0.0,
                "frame_rate": backbone.frame_rate, "longest_frames": int(3 * args.clip * backbone.frame_rate)}
    recognizer = EmotionRecognizer(TrainedModel([fold], features, None, {}), windows=False, backbone=backbone)
    with tempfile.TemporaryDirectory() as folder:
        records = write_clips(Path(folder), args.seconds, args.clip)

        def bare() -> np.ndarray:
            states = [backbone.forward([load_audio(record)])[0].astype(np.float16).astype(np.float32)
                      for record in records]  # (L, T, D) each
            return fold.scores(fold.outputs(states))

        def through_predict() -> np.ndarray:
            table = recognizer.predict_records(records).table
            return table[[f"p_{label}" for label in task.labels]].to_numpy()

        timings = {"bare": [], "predict": []}
        for _ in range(args.rounds):
            for name, function in (("bare", bare), ("predict", through_predict)):
                started = time.perf_counter()
                result = function()
                timings[name].append(time.perf_counter() - started)
                if name == "bare":
                    reference = result
        difference = float(np.abs(result - reference).max())
    bare_s, predict_s = min(timings["bare"]), min(timings["predict"])
    print(f"{len(records)} clips, {args.seconds:.0f} s of audio, {args.model} (random weights), best of {args.rounds}")
    print(f"bare forward + head: {bare_s:.2f} s   ser predict path: {predict_s:.2f} s   "
          f"ratio {predict_s / bare_s:.2f}   max |Δp| {difference:.1e}")


if __name__ == "__main__":
    main()
