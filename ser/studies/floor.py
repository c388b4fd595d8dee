"""The probe floor of `ser report`: the pooled-statistics probe (training/probe.py) of the runs'
own corpus × model × protocol, as the first rows of every ablation table.

Two rows: the single layer whose probe scores best on dev (mean over the runs' folds), and the
concatenation of all layers. The floor a configuration must beat is the test score of whichever
of the two is better on dev, over the same folds as the runs; cells that do not beat it are
marked. The probe is computed once per corpus × model × protocol and kept beside the cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ser.data.atomic_files import read_json
from ser.data.workspace import Workspace
from ser.errors import SerError
from ser.training.probe import ALL_LAYERS, ProbeProtocol, cached_probe, layer_summary

BELOW_FLOOR = "▽"


@dataclass(frozen=True)
class FloorRow:
    label: str
    scores: dict[str, tuple[float, float, int]]  # metric → (mean, std, n) over folds


@dataclass(frozen=True)
class Floor:
    rows: list[FloorRow]
    threshold: dict[str, float]  # metric → the test mean a configuration must exceed
    chosen: str  # label of the row the threshold comes from

    def beaten(self, metric: str, mean: float) -> bool:
        """Whether a configuration's mean `metric` beats the floor (True when the floor lacks it)."""
        return metric not in self.threshold or mean > self.threshold[metric]


RunKey = tuple[str, str, ProbeProtocol]  # corpus, model, protocol


class ProbeFloors:
    """Floors for groups of the report's configurations; `notes` says why a floor is missing."""

    def __init__(self, labelled: pd.DataFrame, root: Path, workdir: Path | None = None):
        self.root = Path(root)
        self.workdir = workdir
        self.notes: list[str] = []
        self._keys: dict[str, set[RunKey | None]] = {}
        self._folds: dict[str, set[str]] = {}
        for _, row in labelled.iterrows():
            key = self._run_key(self.root / row["run_dir"])
            self._keys.setdefault(row["config"], set()).add(key)
            self._folds.setdefault(row["config"], set()).add(str(row.get("fold_name")))
        self._probes: dict[RunKey, pd.DataFrame | None] = {}

    @staticmethod
    def _run_key(run_dir: Path) -> RunKey | None:
        """(corpus, model, protocol) of an in-corpus run; None for cross-corpus runs and unknown ones."""
        path = run_dir / "config.json"
        config = read_json(path) if path.is_file() else {}
        if not config.get("corpus") or not config.get("model") or config.get("test_corpus"):
            return None
        return config["corpus"], config["model"], ProbeProtocol.of_run(config)

    def floor(self, configs) -> Floor | None:
        """The floor of the runs of these configurations, or None (with a note) when they do not
        share one corpus, model and protocol or no probe can be computed."""
        keys = set().union(*(self._keys.get(c, {None}) for c in configs))
        if len(keys) != 1 or None in keys:
            return None
        key = keys.pop()
        table = self._probe(key)
        if table is None:
            return None
        folds = set().union(*(self._folds.get(c, set()) for c in configs))
        if not folds <= set(table["fold"]):
            self._note(f"{key[0]}/{key[1]}: the runs' folds {sorted(folds)} are not the probe's")
            return None
        return floor_of(layer_summary(table, sorted(folds)))

    def _probe(self, key: RunKey) -> pd.DataFrame | None:
        if key not in self._probes:
            corpus, model, protocol = key
            inputs = self._find_inputs(corpus, model)
            self._probes[key] = None
            if inputs is None:
                self._note(f"{corpus}/{model}: no manifest and cache found near {self.root}; pass --workdir")
            else:
                try:
                    self._probes[key] = cached_probe(*inputs, protocol)
                except SerError as error:
                    self._note(f"{corpus}/{model}: {error.message}")
                except (OSError, ValueError) as error:  # e.g. a fold whose training part has one class
                    self._note(f"{corpus}/{model}: the probe failed ({error})")
        return self._probes[key]

    def _find_inputs(self, corpus: str, model: str) -> tuple[Path, Path] | None:
        """(manifest, cache) of corpus × model: from a sweep.json at or below/above the report's
        folder, else a workspace (`--workdir`, or a folder above the runs) holding both."""
        folders = [self.root.resolve(), *self.root.resolve().parents]
        settings = [*self.root.rglob("sweep.json"), *(folder / "sweep.json" for folder in folders)]
        for path in settings:
            try:
                saved = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError):
                continue
            if saved.get("corpus") == corpus and saved.get("model") == model:
                manifest, cache = Path(saved.get("manifest", "")), Path(saved.get("cache", ""))
                if manifest.is_file() and cache.is_file():
                    return manifest, cache
        for folder in ([Path(self.workdir)] if self.workdir is not None else []) + folders:
            workspace = Workspace(folder)
            manifest, cache = workspace.manifest_for(corpus), workspace.cache_path(corpus, model)
            if manifest.is_file() and cache.is_file():
                return manifest, cache
        return None

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def floor_of(summary: pd.DataFrame) -> Floor:
    """Floor rows from a probe's per-layer summary: the best single layer on dev, and all layers."""
    selection = "dev_ua_mean" if "dev_ua_mean" in summary.columns else "dev_ccc_mean_mean"
    metrics = [c.removesuffix("_mean") for c in summary.columns if c.endswith("_mean") and not c.startswith("dev_")]
    single = summary[summary["layer"] != ALL_LAYERS]
    best = single.loc[single[selection].idxmax()]
    chosen = [(f"probe floor: layer {best['layer']} (best on dev)", best)]
    every = summary[summary["layer"] == ALL_LAYERS]
    if not every.empty:
        chosen.append(("probe floor: all layers", every.iloc[0]))
    rows = [FloorRow(label, {m: (float(r[f"{m}_mean"]), float(r[f"{m}_std"]), int(r["n"])) for m in metrics})
            for label, r in chosen]
    label, top = max(chosen, key=lambda pair: pair[1][selection])
    return Floor(rows, {m: float(top[f"{m}_mean"]) for m in metrics}, label)
