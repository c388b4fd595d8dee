"""Speaker normalisation, measured: the floor and a head on plain frames and on frames z-scored per speaker.

Per speaker (`ser train --per-speaker`, `ser probe --per-speaker`): every frame of a speaker's
utterances is scaled by that speaker's own mean and std of each layer and channel, over all of the
speaker's frames (the test speakers' too, from their unlabelled audio: transductive, as in many SER
papers). This script puts the honest comparison side by side, fold by fold: the floor sees the same
normalised features as the head.

    python benchmarks/speaker_normalisation.py --workdir W --corpus turev --model mfcc --head shiftcnn

For each arm (plain, per speaker), on the folds `ser train` makes:
- floor: `ser probe`'s own fit (C by dev log-loss, refit on train + dev) on each utterance's mean
  and std of the arm's features, layer 0;
- the head: `ser train`'s own fold loop with default options, train only, dev-selected epoch.
The heads' runs go to W/runs/<corpus>/<model>/speaker-normalisation/<arm>-<run name>/ (a rerun
skips finished folds, so `--arms plain` and `--arms speaker` can run in two processes and a third
call with both prints the table). One table: UA mean ± sample std over folds, and each fold's UA.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from ser.data.workspace import Workspace
from ser.errors import SerError
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.probe import ProbeProtocol, run_probe
from ser.training.protocol import fold_dir_of, protocol_folds
from ser.training.training_data import TrainingData

ARMS = ("plain", "speaker")


def floor_ua(manifest: Path, cache: Path, config: TrainConfig) -> dict[str, float]:
    """`ser probe`'s layer-0 test UA per fold name, for the run's protocol (per speaker or not)."""
    table = run_probe(manifest, cache, ProbeProtocol.of_run(config.to_dict()), layers=[0])
    return dict(zip(table["fold"].astype(str), table["ua"]))


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
    rows, names = {}, []
    for arm in arms:
        config = TrainConfig.create(args.head, per_speaker=arm == "speaker",
                                    **({"epochs": args.epochs} if args.epochs else {}))
        config = dataclasses.replace(config, model=args.model, corpus=args.corpus)  # as `ser train` records them
        try:
            data = load_training_data(manifest, cache, device="cpu", stream=False, per_speaker=config.per_speaker)
        except SerError as error:  # e.g. a manifest without speakers: one line
            raise SystemExit(f"error: {error}") from None
        folds = protocol_folds(config, data)
        names = [fold.name for fold in folds]
        rows[(arm, "floor (logistic on mean + std, refit)")] = floor_ua(manifest, cache, config)
        run_dir = workspace.runs_root(args.corpus, args.model) / "speaker-normalisation" / f"{arm}-{config.run_name()}"
        try:
            rows[(arm, f"{args.head}, default options")] = head_ua(config, data, folds, run_dir)
        except SerError as error:  # e.g. a fold folder left by other options: its message (the hint is ser's CLI's)
            raise SystemExit(f"error: {error.message}") from None

    print(f"### {args.corpus} {args.model}: test UA (%), plain frames and frames z-scored per speaker\n")
    print("| frames | model | UA mean ± std | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for (arm, model), scores in rows.items():
        values = np.array([scores[name] for name in names]) * 100
        print(f"| {arm} | {model} | {values.mean():.1f} ± {values.std(ddof=1):.1f} | "
              + " | ".join(f"{v:.1f}" for v in values) + " |")


if __name__ == "__main__":
    main()
