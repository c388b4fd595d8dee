"""The workspace convention: manifests/, cache/<corpus>/<model>.h5, runs/<corpus>/<model>/….

Defaults are resolved from what is on disk; an ambiguous default is an error listing the choices.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ser.data.manifest import not_a_manifest
from ser.errors import CacheError, UserInputError
from ser.features.cache import read_attrs


def default_workdir() -> Path:
    """$SER_WORKDIR if set, else the current directory."""
    return Path(os.environ.get("SER_WORKDIR") or ".")


def model_slug(model: str) -> str:
    """A file-name-safe form of a model alias, hub id or local path (`org/name` → `org--name`)."""
    name = model.rstrip("/")
    if os.sep in name and Path(name).exists():
        name = Path(name).name
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name)


def check_cache_model(cache: Path) -> None:
    """Refuse a cache whose recorded model is not the one its file name says (an mfcc cache copied
    to fbank.h5 would train, and be labelled, as fbank)."""
    attrs = read_attrs(cache)
    recorded = [str(attrs.get(key) or "").removeprefix("ser:") for key in ("model", "source")]
    names = {model_slug(name) for name in recorded if name} | {
        model_slug(Path(name.rstrip("/")).name) for name in recorded if name}
    if cache.stem not in names:
        raise CacheError(
            f"{cache} holds features of model {attrs.get('model')!r} ({attrs.get('source')}), not {cache.stem!r}",
            f"move it to {cache.parent / (model_slug(str(attrs.get('model'))) + '.h5')}, or run "
            f"`ser extract --model {cache.stem} --overwrite`",
        )


@dataclass(frozen=True)
class TrainingInputs:
    """What a training run reads: the manifest, its corpus, and the cache of one model."""

    manifest: Path
    corpus: str
    cache: Path
    model: str  # as asked for, or the only cache's file stem


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def manifest_for(self, corpus: str) -> Path:
        return self.manifests_dir / f"{corpus}.csv"

    def find_manifest(self, manifest: Path | None = None) -> Path:
        """The given manifest, or the only one in manifests/."""
        if manifest is not None:
            if not manifest.is_file():
                raise not_a_manifest(manifest, "check the --manifest path")
            return manifest
        found = sorted(self.manifests_dir.glob("*.csv"))
        if not found:
            raise UserInputError(
                f"no manifest in {self.manifests_dir}",
                "run `ser prepare CORPUS ROOT` first, or pass --manifest / --workdir",
            )
        if len(found) > 1:
            names = ", ".join(p.stem for p in found)
            raise UserInputError(f"several manifests in {self.manifests_dir}: {names}", "pick one with --manifest")
        return found[0]

    @staticmethod
    def corpus_of(manifest: Path) -> str:
        return manifest.stem

    def cache_path(self, corpus: str, model: str) -> Path:
        return self.cache_dir / corpus / f"{model_slug(model)}.h5"

    def find_cache(self, corpus: str, model: str | None = None, manifest: Path | None = None) -> Path:
        """The cache of `model` for `corpus`, or the only cache of that corpus (`manifest`: the one
        the user named, for the hint)."""
        if model is not None:
            path = self.cache_path(corpus, model)
            if not path.is_file():
                raise UserInputError(f"no cache of model {model!r} for corpus {corpus!r} at {path}",
                                     _extract_hint(corpus, model, manifest))
            return path
        found = sorted((self.cache_dir / corpus).glob("*.h5"))
        if not found:
            raise UserInputError(f"no feature cache for corpus {corpus!r} in {self.cache_dir / corpus}",
                                 _extract_hint(corpus, model, manifest))
        if len(found) > 1:
            names = ", ".join(p.stem for p in found)
            raise UserInputError(f"several caches for corpus {corpus!r}: {names}", "pick one with --model")
        return found[0]

    def training_inputs(self, manifest: Path | None = None, model: str | None = None) -> TrainingInputs:
        """The manifest (given, or the only one), its corpus and the cache of `model` (or the only one)."""
        manifest_path = self.find_manifest(manifest)
        corpus = self.corpus_of(manifest_path)
        cache = self.find_cache(corpus, model, manifest)
        check_cache_model(cache)
        return TrainingInputs(manifest_path, corpus, cache, model or cache.stem)

    def runs_root(self, corpus: str, model: str) -> Path:
        return self.runs_dir / corpus / model_slug(model)


def _extract_hint(corpus: str, model: str | None, manifest: Path | None) -> str:
    """The command that builds a missing cache (`manifest`: the one the user named)."""
    if manifest is None:
        return f"run `ser extract --model {model or 'M'}` first"
    return (f"run `ser extract --model {model or 'M'} --manifest {manifest}` first (a corpus is named by its "
            f"manifest's file name: {manifest} is {corpus!r})")
