"""Speaker normalisation, measured: the floor and a head on plain frames and on frames z-scored per speaker.

Per speaker: every frame of a speaker's utterances is scaled by that speaker's own mean and std of
each layer and channel, over all of the speaker's frames (the test speakers' too, from their
unlabelled audio: transductive, as in many SER papers). `ser` does not offer this, because a model
trained so would need a new speaker's statistics at prediction time. This script measures what it
would be worth, with the honest comparison: the floor sees the same normalised frames.

    python benchmarks/speaker_normalisation.py --workdir W --corpus turev --model mfcc --head shiftcnn

For each arm (plain, per speaker), on the folds `ser train` makes:
- floor: `ser probe`'s own fit (`ser.training.probe.classify`: C by dev log-loss, refit on
  train + dev) on each utterance's mean and std of the arm's frames, layer 0;
- the head: `ser train`'s own fold loop with default options, train only, dev-selected epoch.
The heads' runs go to W/runs/<corpus>/<model>/speaker-normalisation/<arm>-<head>/ (a rerun skips
finished folds, so `--arms plain` and `--arms speaker` can run in two processes and a third call
with both prints the table). One table: UA mean ± sample std over folds, and each fold's UA.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from ser.data.workspace import Workspace
from ser.features.packed import PackedFeatures
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.probe import classify
from ser.training.protocol import fold_dir_of, protocol_folds
from ser.training.training_data import TrainingData

ARMS = ("plain", "speaker")


def per_speaker_frames(packed: PackedFeatures, speakers: np.ndarray) -> PackedFeatures:
    """A float32 copy of `packed` whose frames are z-scored with each speaker's own frame statistics."""
    frames = packed.frames.float().clone()  # (ΣT, L, D)
    offsets = packed.offsets.tolist()
    for speaker in np.unique(speakers):
        rows = np.flatnonzero(speakers == speaker)
        index = torch.cat([torch.arange(offsets[row], offsets[row + 1]) for row in rows])  # the speaker's frames
        part = frames[index].double()
        mean, std = part.mean(dim=0), part.std(dim=0, unbiased=False).clamp_min(1e-5)  # (L, D) each
        frames[index] = ((part - mean) / std).float()
    return PackedFeatures(packed.ids, frames, packed.offsets)


def pooled_statistics(packed: PackedFeatures, layer: int = 0) -> np.ndarray:
    """(N, 2·D): each utterance's mean and std over its frames of `layer`, as the cache pools them."""
    offsets = packed.offsets.tolist()
    rows = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        frames = packed.frames[start:end, layer].double()  # (T, D)
        rows.append(torch.cat([frames.mean(dim=0), frames.std(dim=0, unbiased=False)]).numpy())
    return np.stack(rows)


def floor_ua(data: TrainingData, folds, pooled: np.ndarray) -> dict[str, float]:
    """`ser probe`'s fit on `pooled`, per fold name."""
    targets = data.targets.cpu().numpy()
    scores = {}
    for fold in folds:
        parts = [data.positions(ids) for ids in (fold.train, fold.dev, fold.test)]
        scores[fold.name] = classify(tuple(pooled[p] for p in parts), tuple(targets[p] for p in parts),
                                     len(data.task.labels))["ua"]
    return scores


def head_ua(config: TrainConfig, data: TrainingData, folds, run_dir: Path) -> dict[str, float]:
    """`ser train`'s fold loop on `data`, per fold name (finished folds are read back, not retrained)."""
    scores = {}
    for index, fold in enumerate(folds):
        scores[fold.name] = train_fold(config, data, fold, run_dir / fold_dir_of(fold, index))["test"]["ua"]
        print(f"{run_dir.name} fold {fold.name}: test UA {100 * scores[fold.name]:.1f}", flush=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True, help="the cache's features, e.g. mfcc, fbank")
    parser.add_argument("--head", default="shiftcnn")
    parser.add_argument("--arms", default=",".join(ARMS), help="plain, speaker or both (default)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the head's recipe")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    arms = [arm.strip() for arm in args.arms.split(",")]
    if not arms or any(arm not in ARMS for arm in arms):
        raise SystemExit(f"--arms {args.arms!r}: choose from {', '.join(ARMS)}")

    torch.set_num_threads(args.threads)
    workspace = Workspace(args.workdir)
    manifest, cache = workspace.manifest_for(args.corpus), workspace.cache_path(args.corpus, args.model)
    for path, step in ((manifest, f"ser prepare {args.corpus} ROOT"), (cache, f"ser extract --model {args.model}")):
        if not path.is_file():
            raise SystemExit(f"{path} does not exist: run `{step} --workdir {args.workdir}` first")
    plain = load_training_data(manifest, cache, device="cpu", stream=False)
    if "speaker" not in plain.table or plain.table["speaker"].isna().any():
        raise SystemExit(f"{manifest} does not name every utterance's speaker: nothing to normalise by")
    config = TrainConfig.create(args.head, **({"epochs": args.epochs} if args.epochs else {}))
    folds = protocol_folds(config, plain)
    speakers = plain.table["speaker"].astype(str).to_numpy()

    rows = {}
    for arm in arms:
        packed = plain.packed if arm == "plain" else per_speaker_frames(plain.packed, speakers)
        data = dataclasses.replace(plain, packed=packed)
        rows[(arm, "floor (logistic on mean + std, refit)")] = floor_ua(data, folds, pooled_statistics(data.packed))
        run_dir = workspace.runs_root(args.corpus, args.model) / "speaker-normalisation" / f"{arm}-{config.run_name()}"
        rows[(arm, f"{args.head}, default options")] = head_ua(config, data, folds, run_dir)

    names = [fold.name for fold in folds]
    print(f"### {args.corpus} {args.model}: test UA (%), plain frames and frames z-scored per speaker\n")
    print("| frames | model | UA mean ± std | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for (arm, model), scores in rows.items():
        values = np.array([scores[name] for name in names]) * 100
        print(f"| {arm} | {model} | {values.mean():.1f} ± {values.std(ddof=1):.1f} | "
              + " | ".join(f"{v:.1f}" for v in values) + " |")


if __name__ == "__main__":
    main()
