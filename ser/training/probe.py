"""Layer-wise linear probes on the cache's pooled statistics: the cheapest honest baseline.

Every utterance's per-layer mean and std over time (stored by `ser extract`, (L, 2, D)) becomes
a 2·D vector per layer (and the L·2·D concatenation of all layers). A scikit-learn pipeline,
standardise → logistic regression (categorical) or ridge regression (dimensional, scored by
CCC), is fitted on each fold's training part; its regularisation is chosen on the fold's dev
part alone (by log-loss; by CCC for regression); the pipeline is then refitted on train + dev
with that regularisation, and test is scored once, with the same folds and dev split as
`ser train`. The frames are never read, so a probe of every layer of a corpus takes seconds.
With `per_speaker` the statistics are those of frames z-scored per speaker (speaker_norm.py).

`cached_probe` keeps the result next to the cache (`<corpus>/<model>.probe/<protocol>.json`),
computed once per corpus × model × protocol, for `ser report`'s floor rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ser.data.atomic_files import write_text
from ser.data.fold import Fold
from ser.data.folds import make_folds
from ser.data.manifest import read_manifest
from ser.features.cache import CacheReader
from ser.training import metrics
from ser.training.cache_access import cached_rows, refuse_layers_outside
from ser.training.dimensional import dimensional_metrics
from ser.training.protocol import announce_fold_notes
from ser.training.speaker_norm import per_speaker_pooled, speaker_of_rows
from ser.training.tasks import build_task

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # logistic regression: inverse L2 strength, chosen by dev log-loss
ALPHA_GRID = (1.0, 10.0, 100.0, 1e3, 1e4)  # ridge: L2 strength, chosen on dev
ALL_LAYERS = "all"
PROBE_VERSION = 3  # 2: refitted on train + dev before test; 3: C chosen by dev log-loss. Bump when the probe's numbers would change, so cached results are recomputed
ProbeProgress = Callable[[str, int, int], None]  # (layer, done, total)


@dataclass(frozen=True)
class ProbeProtocol:
    """What decides a probe's numbers besides the cache: the task and `ser train`'s fold options."""

    task: str = "categorical"
    folds: str | None = None  # None: the corpus's default scheme
    k: int | None = None
    dev: str = "auto"  # auto | speaker | random (ser/data/fold.py dev_split)
    dev_fraction: float = 0.2
    fold_seed: int = 0
    per_speaker: bool = False  # statistics of frames z-scored per speaker, as `ser train --per-speaker` sees them

    @classmethod
    def of_run(cls, config: dict) -> "ProbeProtocol":
        """The protocol a run used, from its config.json."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: config[name] for name in names if name in config})

    def key(self) -> str:
        """A readable file-name-safe key, e.g. `categorical-default-random0.2-s0`."""
        scheme = (self.folds or "default") + (str(self.k) if self.k else "")
        speaker = "-spk" if self.per_speaker else ""  # absent otherwise: earlier probes keep their keys
        return f"{self.task}-{scheme}-{self.dev}{self.dev_fraction:g}-s{self.fold_seed}{speaker}"


@dataclass(frozen=True)
class PooledData:
    """The usable utterances of a corpus with their targets and the cache's layer count."""

    ids: list[str]
    table: pd.DataFrame
    targets: np.ndarray  # (N,) class index | (N, K) dimension values
    labels: tuple[str, ...]  # class names (categorical) or dimension names
    num_layers: int
    selection_metric: str  # ua | ccc_mean
    fold_label_column: str | None


def load_targets(manifest: Path, cache: Path, task: str = "categorical") -> PooledData:
    """The manifest rows `ser train` would use (labelled, in the cache), and their targets."""
    df = read_manifest(manifest)
    fitted = build_task(task, df)
    with CacheReader(cache) as reader:
        table = cached_rows(reader, cache, manifest, df, fitted.usable(df), None)
        num_layers = reader.num_layers
    labels = tuple(getattr(fitted, "labels", None) or fitted.dimensions)
    return PooledData(list(table["id"]), table, fitted.targets(table).numpy(), labels, num_layers,
                      fitted.selection_metric, fitted.fold_label_column)


def probe_folds(data: PooledData, protocol: ProbeProtocol) -> list[Fold]:
    """The folds `ser train` makes for the same rows and protocol."""
    folds = make_folds(data.table, scheme=protocol.folds, k=protocol.k, seed=protocol.fold_seed, dev=protocol.dev,
                       dev_fraction=protocol.dev_fraction, label_column=data.fold_label_column)
    return announce_fold_notes(folds, data.table, data.fold_label_column)


def layer_features(pooled: np.ndarray) -> np.ndarray:
    """(N, 2, D) mean and std of one layer, or (N, L, 2, D) of several → (N, 2·D) | (N, L·2·D)."""
    return pooled.reshape(len(pooled), -1)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    return [scaler.transform(x) for x in (train, *others)]


def _train_and_dev(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...]) -> tuple[tuple[np.ndarray, ...], ...]:
    """(train + dev, test) features and targets: what the probe refits on once dev chose."""
    return (np.concatenate(x[:2]), x[2]), (np.concatenate(y[:2]), y[2])


def _logistic(c: float, x: np.ndarray, y: np.ndarray):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, max_iter=1000).fit(x, y)


def classify(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...], num_classes: int, refit: bool = True) -> dict:
    """Standardise → logistic regression for each C of the grid, fitted on train; the C with the
    lowest dev log-loss is refitted on train + dev (the floor; `refit=False`: kept as fitted on
    train, as benchmarks/floor_anatomy.py compares) and scores test. Log-loss, not dev UA, chooses:
    over a few hundred dev utterances UA moves in steps of one clip, so its maximum over the grid
    is an optimistic dev score and a noisy choice (dev UA minus test UA on the synthetic demo
    corpus: benchmarks/probe_selection.py)."""
    from sklearn.metrics import log_loss

    train, dev, _ = _standardise(*x)
    best = None
    for c in C_GRID:
        model = _logistic(c, train, y[0])
        dev_loss = log_loss(y[1], model.predict_proba(dev), labels=model.classes_)
        if best is None or dev_loss < best[0]:  # ties keep the stronger regularisation
            best = (dev_loss, c, metrics.ua(y[1], model.predict(dev)))
    dev_loss, c, dev_ua = best
    (seen_x, test_x), (seen_y, _) = _train_and_dev(x, y) if refit else ((x[0], x[2]), (y[0], y[2]))
    seen, test = _standardise(seen_x, test_x)
    predicted = _logistic(c, seen, seen_y).predict(test)
    return {"regularisation": c, "dev_loss": dev_loss, "dev_ua": dev_ua, "ua": metrics.ua(y[2], predicted),
            "wa": metrics.wa(y[2], predicted), "macro_f1": metrics.macro_f1(y[2], predicted, labels=list(range(num_classes)))}


def _regress(x: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...], dimensions: tuple[str, ...]) -> dict:
    """Standardise → ridge on z-scored targets for each alpha, fitted on train; the alpha with the
    best dev CCC is refitted on train + dev and scores test."""
    from sklearn.linear_model import Ridge

    train, dev, _ = _standardise(*x)
    mean, std = y[0].mean(axis=0), y[0].std(axis=0).clip(1e-6)  # (K,)
    best = None
    for alpha in ALPHA_GRID:
        model = Ridge(alpha=alpha).fit(train, (y[0] - mean) / std)
        dev_ccc = dimensional_metrics(model.predict(dev) * std + mean, y[1], dimensions)["ccc_mean"]
        if best is None or dev_ccc > best[0]:
            best = (dev_ccc, alpha)
    dev_ccc, alpha = best
    (seen_x, test_x), (seen_y, _) = _train_and_dev(x, y)
    seen, test = _standardise(seen_x, test_x)
    mean, std = seen_y.mean(axis=0), seen_y.std(axis=0).clip(1e-6)  # (K,)
    model = Ridge(alpha=alpha).fit(seen, (seen_y - mean) / std)
    scores = dimensional_metrics(model.predict(test) * std + mean, y[2], dimensions)
    return {"regularisation": alpha, "dev_ccc_mean": dev_ccc, **scores}


def run_probe(
    manifest: Path,
    cache: Path,
    protocol: ProbeProtocol = ProbeProtocol(),
    layers: list[int] | None = None,
    progress: ProbeProgress | None = None,
) -> pd.DataFrame:
    """One row per layer (and `all`, the concatenation of the probed layers) × fold: the chosen
    regularisation, the dev score it was chosen on, and the test metrics."""
    data = load_targets(manifest, cache, protocol.task)
    folds = probe_folds(data, protocol)
    layers = list(range(data.num_layers)) if layers is None else list(layers)
    refuse_layers_outside(layers, data.num_layers)
    speaker_of_row = speaker_of_rows(data.table)[0] if protocol.per_speaker else None
    position = {utt: i for i, utt in enumerate(data.ids)}
    parts = [np.array([position[utt] for utt in ids]) for fold in folds for ids in (fold.train, fold.dev, fold.test)]
    names = [str(layer) for layer in layers] + ([ALL_LAYERS] if len(layers) > 1 else [])
    rows = []
    # One BLAS/OpenMP thread: these fits are small, and spare threads spin on a busy machine (10-30× slower).
    with CacheReader(cache) as reader, threadpool_limits(limits=1):
        probed = []
        lengths = np.array([reader.lengths[utt] for utt in data.ids])  # (N,) frames
        for done, name in enumerate(names):
            if progress is not None:
                progress(name, done, len(names))
            if name == ALL_LAYERS:
                features = np.concatenate(probed, axis=1)  # (N, L·2·D)
            else:
                pooled = reader.pooled_rows(data.ids, int(name))  # (N, 2, D)
                if speaker_of_row is not None:
                    pooled = per_speaker_pooled(pooled, lengths, speaker_of_row)
                features = layer_features(pooled)  # (N, 2·D)
                probed.append(features)
            for index, fold in enumerate(folds):
                train, dev, test = parts[3 * index : 3 * index + 3]
                x, y = (features[train], features[dev], features[test]), (data.targets[train], data.targets[dev],
                                                                         data.targets[test])
                scores = classify(x, y, len(data.labels)) if data.selection_metric == "ua" else _regress(x, y, data.labels)
                rows.append({"layer": name, "fold": fold.name, **scores,
                             "train": len(train), "dev": len(dev), "test": len(test)})
        if progress is not None:
            progress(names[-1], len(names), len(names))
    return pd.DataFrame(rows)


def layer_summary(table: pd.DataFrame, folds: list[str] | None = None) -> pd.DataFrame:
    """Per layer (in probe order): mean, sample std (ddof=1, NaN for one fold) and count over the
    (given) folds of every score column: the same spread as the heads' rows beside it in `ser report`."""
    if folds is not None:
        table = table[table["fold"].astype(str).isin([str(f) for f in folds])]
    scores = [c for c in table.columns if c not in ("layer", "fold", "regularisation", "train", "dev", "test")]
    grouped = table.groupby("layer", sort=False)[scores]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    return summary.assign(n=grouped.size()).reset_index()


def _stamp(cache: Path, protocol: ProbeProtocol) -> dict:
    """What a cached probe result depends on: the cache file as it is now, the protocol, the grids."""
    status = Path(cache).stat()
    return {"version": PROBE_VERSION, "cache": Path(cache).name, "cache_bytes": status.st_size,
            "cache_mtime_ns": status.st_mtime_ns, "protocol": dataclasses.asdict(protocol),
            "c_grid": list(C_GRID), "alpha_grid": list(ALPHA_GRID)}


def probe_cache_path(cache: Path, protocol: ProbeProtocol) -> Path:
    """`<corpus>/<model>.probe/<protocol key>.json` beside the cache file."""
    return Path(cache).with_suffix(".probe") / f"{protocol.key()}.json"


def cached_probe(manifest: Path, cache: Path, protocol: ProbeProtocol = ProbeProtocol(),
                 progress: ProbeProgress | None = None) -> pd.DataFrame:
    """`run_probe` over every layer, read from beside the cache when an earlier probe of the same
    cache file and protocol left its result there; computed and stored (atomically) otherwise."""
    path = probe_cache_path(cache, protocol)
    stamp = _stamp(cache, protocol)
    manifest_hash = hashlib.sha256(Path(manifest).read_bytes()).hexdigest()
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("stamp") == stamp and saved.get("manifest_file_sha256") == manifest_hash:
            return pd.DataFrame(saved["rows"]).astype({"layer": str, "fold": str})
    table = run_probe(manifest, cache, protocol, progress=progress)
    record = {"stamp": stamp, "manifest_file_sha256": manifest_hash,
              "rows": json.loads(table.to_json(orient="records"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=1))
    return table.astype({"layer": str, "fold": str})
