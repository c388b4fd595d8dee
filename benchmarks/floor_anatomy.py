"""Where the probe floor's points come from, and what the heads' training makes of the same features.

`ser probe` (the floor) fits a logistic regression on each utterance's mean and std of every
channel, chooses C on dev by log-loss and refits on train + dev. The heads see the frames, train
on the training part only and keep the dev-best epoch. This script takes the floor apart on the
same folds and cache, one change at a time:

    python benchmarks/floor_anatomy.py --workdir W --corpus turev --model mfcc \
        --run W/runs/turev/mfcc/accuracy-shiftcnn

- the floor itself (`ser probe`'s own fit, `ser.training.probe.classify`), then fitted on train only;
- mean only and std only (train only): what each statistic is worth;
- an MLP on the same pooled statistics trained the heads' way (the shift recipe: AdamW, warm-up
  and cosine over 100 epochs, the dev-best epoch by UA; train only): the heads' training on the
  probe's features, without the frames;
- the floor and the MLP again on per-speaker standardised statistics: each speaker's utterances
  scaled by that speaker's own mean and std of each statistic (the test speakers' too, from their
  unlabelled audio: speaker normalisation, transductive), which takes the speaker's voice out of
  the level the classifier sees;
- each `--run` given: a trained head's test UA on the same folds.

One table: UA mean ± sample std over folds and each fold's UA. Deterministic (seeded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ser.data.workspace import Workspace
from ser.features.cache import CacheReader
from ser.training import metrics
from ser.training.probe import ProbeProtocol, cached_probe, classify, layer_summary, load_targets, probe_folds
from ser.training.recipes import build_optimizer, lr_at, recipe_for


def standardised(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every part scaled by the training part's per-column mean and std."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-12
    return [(x - mean) / std for x in (train, *others)]


def per_speaker_standardised(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """(N, F) rows, each speaker's rows scaled by that speaker's own per-column mean and std."""
    scaled = np.empty_like(x)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        scaled[rows] = (x[rows] - x[rows].mean(axis=0)) / (x[rows].std(axis=0) + 1e-12)
    return scaled


def logistic_ua(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...], classes: int, refit: bool) -> float:
    """Test UA of `ser probe`'s own rule (C by dev log-loss), refitted on train + dev or not."""
    return classify(x, y, classes, refit=refit)["ua"]


def mlp_ua(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...], classes: int, seed: int = 0) -> float:
    """Linear(F, 256) → GELU → Linear(256, C) on the standardised pooled statistics, trained with the
    shift recipe on train only; test UA at the dev-best epoch (by UA, as `ser train`)."""
    recipe = recipe_for("shiftcnn")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train, dev, test = (torch.tensor(part, dtype=torch.float32) for part in standardised(*x))  # (N, F) each
    targets = torch.from_numpy(y[0]).long()
    net = torch.nn.Sequential(torch.nn.Linear(train.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, classes))
    optimizer = build_optimizer(net, recipe)
    steps_per_epoch = -(-len(train) // recipe.batch_size)
    best_ua, best_test, step = -1.0, None, 0
    for _ in range(recipe.epochs):
        order = torch.randperm(len(train), generator=generator)
        for batch in order.split(recipe.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, recipe, steps_per_epoch)
            loss = torch.nn.functional.cross_entropy(net(train[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), recipe.grad_clip)
            optimizer.step()
            step += 1
        with torch.no_grad():
            dev_ua = metrics.ua(y[1], net(dev).argmax(dim=1).numpy())
            if dev_ua > best_ua:
                best_ua, best_test = dev_ua, net(test).argmax(dim=1).numpy()
    return metrics.ua(y[2], best_test)


def run_fold_ua(run: Path) -> dict[str, float]:
    """A trained run's test UA per fold name, from each fold's metrics.json."""
    scores = {}
    for fold_dir in sorted(run.glob("fold*")):
        config = json.loads((fold_dir / "config.json").read_text())
        scores[str(config["fold"])] = json.loads((fold_dir / "metrics.json").read_text())["test"]["ua"]
    if not scores:
        raise SystemExit(f"{run}: no fold with metrics.json; give a finished `ser train` run directory")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True, help="the cache's features, e.g. mfcc, fbank, wavlm-base")
    parser.add_argument("--layer", type=int, default=None, help="default: the layer `ser probe` chose on dev")
    parser.add_argument("--run", type=Path, action="append", default=[], help="a `ser train` run to compare")
    args = parser.parse_args()

    workspace = Workspace(args.workdir)
    manifest, cache = workspace.manifest_for(args.corpus), workspace.cache_path(args.corpus, args.model)
    for path, step in ((manifest, f"ser prepare {args.corpus} ROOT"), (cache, f"ser extract --model {args.model}")):
        if not path.is_file():
            raise SystemExit(f"{path} does not exist: run `{step} --workdir {args.workdir}` first")
    heads = {run: run_fold_ua(run) for run in args.run}  # read first: a wrong path fails at once
    protocol = ProbeProtocol()
    probe = cached_probe(manifest, cache, protocol)
    if args.layer is None:
        single = layer_summary(probe[probe["layer"] != "all"])
        args.layer = int(single.loc[single["ua_mean"].idxmax(), "layer"])
    data = load_targets(manifest, cache)
    folds = probe_folds(data, protocol)
    position = {utt: i for i, utt in enumerate(data.ids)}
    classes = len(data.labels)
    with CacheReader(cache) as reader:
        pooled = reader.pooled_rows(data.ids, args.layer).astype(np.float64)  # (N, 2, D): mean, std
    both = pooled.reshape(len(pooled), -1)  # (N, 2·D)
    statistics = {"mean + std": both, "mean": pooled[:, 0], "std": pooled[:, 1]}
    has_speakers = "speaker" in data.table and data.table["speaker"].notna().all()
    if has_speakers:
        speakers = data.table["speaker"].astype(str).to_numpy()
        statistics["mean + std, per speaker"] = per_speaker_standardised(both, speakers)
    arms = [
        ("floor: logistic, refit on train + dev", "mean + std", lambda x, y: logistic_ua(x, y, classes, refit=True)),
        ("logistic, train only", "mean + std", lambda x, y: logistic_ua(x, y, classes, refit=False)),
        ("logistic, train only", "mean", lambda x, y: logistic_ua(x, y, classes, refit=False)),
        ("logistic, train only", "std", lambda x, y: logistic_ua(x, y, classes, refit=False)),
        ("MLP, the heads' recipe, train only", "mean + std", lambda x, y: mlp_ua(x, y, classes)),
        ("MLP, the heads' recipe, train only", "mean", lambda x, y: mlp_ua(x, y, classes)),
    ]
    if has_speakers:
        arms += [
            ("logistic, refit on train + dev", "mean + std, per speaker",
             lambda x, y: logistic_ua(x, y, classes, refit=True)),
            ("MLP, the heads' recipe, train only", "mean + std, per speaker", lambda x, y: mlp_ua(x, y, classes)),
        ]
    else:
        print("note: the manifest does not name every utterance's speaker: no per-speaker rows")
    rows = {}
    with threadpool_limits(limits=1):
        for fold in folds:
            parts = [np.array([position[utt] for utt in ids]) for ids in (fold.train, fold.dev, fold.test)]
            y = tuple(data.targets[part] for part in parts)
            for name, features, arm in arms:
                x = tuple(statistics[features][part] for part in parts)
                rows.setdefault((name, features), {})[fold.name] = arm(x, y)
    for run, scores in heads.items():
        rows[(f"head: {run.name}, train only", "frames")] = scores

    fold_names = [fold.name for fold in folds]
    print(f"### {args.corpus} {args.model}, layer {args.layer}: test UA (%) on `ser probe`'s folds")
    print("(the logistic rows are `ser probe`'s own fit; std is the sample std over folds)\n")
    print("| fit | statistics | UA mean ± std | " + " | ".join(fold_names) + " |")
    print("|---|---|---|" + "---|" * len(fold_names))
    for (name, features), scores in rows.items():
        values = np.array([scores.get(fold, np.nan) for fold in fold_names]) * 100
        print(f"| {name} | {features} | {np.nanmean(values):.1f} ± {np.nanstd(values, ddof=1):.1f} | "
              + " | ".join(f"{v:.1f}" for v in values) + " |")


if __name__ == "__main__":
    main()
