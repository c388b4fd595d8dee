"""How the probe chooses its regularisation: by dev UA (the old rule) or by dev log-loss (today's).

For one cache, on `ser probe`'s own folds and dev split (the same rows and pooled mean + std of
every layer):
  dev-ua        computed here: standardise → logistic regression for each C of the grid on train,
                the C with the best dev UA (ties: the stronger regularisation), refitted on
                train + dev, test scored;
  dev-log-loss  `ser probe` itself (`run_probe`), which keeps the C with the lowest dev log-loss.
Per rule and layer chosen on dev: mean dev UA of the chosen C, mean test UA ± sample std over
folds, and the gap dev − test (dev flatters when the gap exceeds one fold-to-fold std; test above
dev is expected, as test's model is refitted on train + dev).

    python benchmarks/probe_selection.py --workdir demo-workdir --corpus synthetic --model fbank
    python benchmarks/probe_selection.py --workdir accuracy-turev --corpus turev --model mfcc
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ser.data.workspace import Workspace
from ser.features.cache import CacheReader
from ser.training import metrics
from ser.training.probe import C_GRID, ProbeProtocol, layer_features, load_targets, probe_folds, run_probe


def fitted(c: float, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, max_iter=1000).fit(x, y)


def dev_ua_rule(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...]) -> tuple[float, float]:
    """(dev UA of the C with the best dev UA, test UA after the refit on train + dev): the old rule."""
    scaler = StandardScaler().fit(x[0])
    train, dev = scaler.transform(x[0]), scaler.transform(x[1])
    dev_uas = [metrics.ua(y[1], fitted(c, train, y[0]).predict(dev)) for c in C_GRID]
    best = int(np.argmax(dev_uas))  # the first of equals: the stronger regularisation
    seen_x, seen_y = np.concatenate(x[:2]), np.concatenate(y[:2])
    scaler = StandardScaler().fit(seen_x)
    predicted = fitted(C_GRID[best], scaler.transform(seen_x), seen_y).predict(scaler.transform(x[2]))
    return dev_uas[best], metrics.ua(y[2], predicted)


def print_rule(rule: str, per_layer: dict[str, tuple[list[float], list[float]]]) -> None:
    """One line: the layer with the best mean dev UA, its dev and test UA and the gap."""
    layer = max(per_layer, key=lambda name: np.mean(per_layer[name][0]))
    dev, test = (np.array(scores) for scores in per_layer[layer])
    gap, spread = dev.mean() - test.mean(), test.std(ddof=1)
    print(f"{rule:13s} layer {layer:>2s}: dev UA {100 * dev.mean():5.1f}  test UA {100 * test.mean():5.1f} ± "
          f"{100 * spread:4.1f}  gap {100 * gap:+5.1f} ({'flatters: beyond' if gap > spread else 'within'} one std)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", default="fbank", help="the cache to probe (default fbank)")
    args = parser.parse_args()
    workspace = Workspace(args.workdir)
    manifest, cache = workspace.manifest_for(args.corpus), workspace.cache_path(args.corpus, args.model)
    data = load_targets(manifest, cache)
    folds = probe_folds(data, ProbeProtocol())
    position = {utt: i for i, utt in enumerate(data.ids)}
    print(f"{args.corpus} / {args.model}: {len(data.ids)} utterances, {len(folds)} folds, {data.num_layers} layer(s)")
    old_rule = {}  # layer → (dev UAs, test UAs) over folds
    with CacheReader(cache) as reader, threadpool_limits(limits=1):
        for layer in range(data.num_layers):
            features = layer_features(reader.pooled_rows(data.ids, layer))  # (N, 2·D)
            scores = old_rule.setdefault(str(layer), ([], []))
            for fold in folds:
                rows = [np.array([position[u] for u in ids]) for ids in (fold.train, fold.dev, fold.test)]
                dev_ua, test_ua = dev_ua_rule(tuple(features[r] for r in rows), tuple(data.targets[r] for r in rows))
                scores[0].append(dev_ua)
                scores[1].append(test_ua)
    print_rule("dev-ua", old_rule)
    probe = run_probe(manifest, cache)
    probe = probe[probe["layer"] != "all"]
    print_rule("dev-log-loss", {layer: (list(part["dev_ua"]), list(part["ua"]))
                                for layer, part in probe.groupby("layer", sort=False)})

if __name__ == "__main__":
    main()
