"""Crash-safe cache writing: finished utterances go to small shard files, merged at the end.

`<out>.partial/` holds `header.json` (what is being extracted) and `shard-NNNNNN.h5` files, each
written under a temporary name and renamed atomically, so a killed run (SIGKILL included) leaves
only whole shards. A rerun reads the shard ids and skips them. When every utterance is done the
shards are merged into `<out>.tmp`, marked complete and renamed over `<out>`: a finished cache is
replaced only by another finished cache. `overwrite` discards an unfinished run only when it was
made with other settings; the same request always resumes. Under torchrun every rank writes
its own shards (`shard-NNNNNN-rank<R>.h5`, see distributed.py) and the leader merges them all.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ser.errors import CacheError, write_failure
from ser.features.cache import (FORMAT, FORMAT_VERSION, read_attrs, read_strings, replaceable_by_overwrite,
                                utterance_key)
from ser.features.write_room import check_room, write_bytes

FP16_MAX = float(np.finfo(np.float16).max)
# Attributes that decide what the features are: a cache or partial run that differs in one of
# these is never reused.
IDENTITY_KEYS = ("source", "random_init", "layers", "max_seconds", "format_version")


@dataclass
class UtteranceFeatures:
    """One finished utterance, ready to store."""

    id: str
    features: np.ndarray  # (L, T, D) float16, or float32 when fp16 would overflow
    pooled: np.ndarray  # (L, 2, D) float32
    functionals: np.ndarray | None = None  # (F,) float32 utterance-level features (openSMILE), if any
    fingerprint: str = ""  # of its source audio (see features.fingerprint)

    @classmethod
    def from_float32(cls, utt_id: str, states: np.ndarray, fingerprint: str = "",
                     functionals: np.ndarray | None = None) -> "UtteranceFeatures":
        """Pool in float32, then store as float16 unless a value exceeds fp16's range."""
        pooled = np.stack([states.mean(axis=1), states.std(axis=1)], axis=1).astype(np.float32)  # (L, 2, D)
        overflow = np.abs(states).max() > FP16_MAX
        return cls(utt_id, states if overflow else states.astype(np.float16), pooled, functionals, fingerprint)


def _mismatch(existing: dict, wanted: dict, what: Path) -> CacheError | None:
    if "source" in wanted and existing.get("source") != wanted["source"]:
        return CacheError(
            f"{what} was made by model {existing.get('model')!r} ({existing.get('source')}), not {wanted['source']}",
            "pass --overwrite to replace it, or --out to write elsewhere",
        )
    for key in IDENTITY_KEYS:
        if key in wanted and existing.get(key) != wanted[key]:
            return CacheError(
                f"{what} was made with {key}={existing.get(key)!r} (model {existing.get('model')!r}), "
                f"not {key}={wanted[key]!r} as asked",
                "pass --overwrite to replace it, or --out to write elsewhere",
            )
    if "manifest_sha256" in wanted and existing.get("manifest_sha256") != wanted["manifest_sha256"]:
        return CacheError(
            f"the manifest changed since {what} was made (its hash no longer matches)",
            "pass --overwrite to re-extract, or restore the manifest it was made from",
        )
    return None


def _rows(dataset: h5py.Dataset):
    """A shard's rows in one read, or the dataset itself (read row by row) when a row fails its
    checksum: a finished cache being repaired holds damaged rows that the merge never copies."""
    try:
        return dataset[()]
    except (OSError, RuntimeError):
        return dataset


def _temporary(final: Path) -> Path:
    """A per-process temporary name beside `final`: `<name>.<pid>.tmp`."""
    return final.with_name(f"{final.name}.{os.getpid()}.tmp")


def _written_by_live_process(temporary: Path) -> bool:
    """Whether the process named in `<name>.<pid>.tmp` is still running (never delete its files)."""
    pid = temporary.suffixes[-2][1:] if len(temporary.suffixes) >= 2 else ""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def existing_cache_is_complete(out: Path, wanted: dict, overwrite: bool) -> bool:
    """True when `out` is a finished cache of exactly this request (nothing to do).

    Raises CacheError when `out` or an unfinished run belongs to another model or manifest
    (unless `overwrite`); `wanted` may hold only the identity keys known so far.
    """
    if out.is_dir():
        raise write_failure(out, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    if overwrite:
        if out.exists() and not replaceable_by_overwrite(out):
            raise CacheError(f"--overwrite replaces only a feature cache, and {out} is not one",
                             "choose another --out")
        return False
    if out.exists():
        existing = read_attrs(out)
        error = _mismatch(existing, wanted, out)
        if error:
            raise error
        if existing.get("complete"):
            return True
    header = partial_dir(out) / "header.json"
    if header.is_file():
        error = _mismatch(json.loads(header.read_text()), wanted, partial_dir(out))
        if error:
            raise error
    return False


class ShardedCacheWriter:
    """Writes shards into `<out>.partial/` and merges them into `<out>` at the end."""

    def __init__(self, out: Path, attrs: dict, overwrite: bool = False, shard_suffix: str = ""):
        self.out = Path(out)
        self.shard_suffix = shard_suffix  # "-rank<R>" under torchrun: ranks never share a file name
        self.attrs = dict(attrs, format=FORMAT, format_version=FORMAT_VERSION)
        self.partial = partial_dir(self.out)
        header = self.partial / "header.json"
        if header.is_file():
            error = _mismatch(json.loads(header.read_text()), self.attrs, self.partial)
            if error and not overwrite:
                raise error
            if error:  # an unfinished run of other settings: start afresh
                shutil.rmtree(self.partial)
        try:
            self.partial.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_failure(self.partial, error) from None
        if not header.is_file():
            write_bytes(header, _temporary(header), json.dumps(self.attrs, indent=1).encode())
        for stale in self.partial.glob("*.tmp"):
            if not _written_by_live_process(stale):
                stale.unlink(missing_ok=True)
        self._next_shard = 1 + max((int(p.stem.split("-")[1]) for p in self._shards()), default=0)

    def _shards(self) -> list[Path]:
        return sorted(self.partial.glob("shard-*.h5"))

    def done_ids(self) -> set[str]:
        """Ids already stored in whole shards."""
        return set(self.done_fingerprints())

    def done_fingerprints(self) -> dict[str, str]:
        """Id → source fingerprint ("" when not recorded) of every stored utterance, newest shard last."""
        done: dict[str, str] = {}
        for shard in self._shards():
            with h5py.File(shard, "r") as f:
                ids = read_strings(f["ids"])
                prints = read_strings(f["fingerprints"]) if "fingerprints" in f else [""] * len(ids)
                done.update(zip(ids, prints))
        return done

    def adopt(self, cache: Path) -> None:
        """Start from a finished cache (its layout is a shard's): its utterances count as done, and
        the ones extracted again go to newer shards, which win at the merge."""
        if self._shards():
            return  # adopted already by an interrupted run
        first = self.partial / f"shard-{0:06d}.h5"
        try:
            os.link(cache, first)
        except OSError:
            shutil.copyfile(cache, _temporary(first))
            os.replace(_temporary(first), first)
        self._next_shard = 1

    def write_shard(self, items: list[UtteranceFeatures]) -> None:
        """Store finished utterances atomically (a temporary file renamed into place)."""
        if not items:
            return
        final = self.partial / f"shard-{self._next_shard:06d}{self.shard_suffix}.h5"
        temporary = _temporary(final)
        # Room is checked first: HDF5 reports a full disk or a file-size limit from inside its
        # buffers (a traceback per object, then possibly a crash), so it must not meet one.
        check_room(final, sum(item.features.nbytes + item.pooled.nbytes for item in items), len(items))
        try:
            with h5py.File(temporary, "w") as f:
                f.create_dataset("ids", data=[item.id for item in items], dtype=h5py.string_dtype())
                f.create_dataset("lengths", data=np.array([item.features.shape[1] for item in items], dtype=np.int64))
                f.create_dataset("pooled", data=np.stack([item.pooled for item in items]))  # (n, L, 2, D)
                f.create_dataset("fingerprints", data=[item.fingerprint for item in items],
                                 dtype=h5py.string_dtype())
                if items[0].functionals is not None:
                    f.create_dataset("functionals", data=np.stack([item.functionals for item in items]))  # (n, F)
                group = f.create_group("features")
                for item in items:  # one checksummed chunk per utterance: still one contiguous read
                    group.create_dataset(utterance_key(item.id), data=item.features, chunks=item.features.shape,
                                         fletcher32=True)
            os.replace(temporary, final)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno:
                raise write_failure(final, error) from None
            raise
        self._next_shard += 1

    def finish(self, order: list[str], skipped: dict[str, str], extra_attrs: dict,
               functional_names: tuple[str, ...] = ()) -> Path:
        """Merge the shards (utterances in `order`) into `<out>` and remove the partial folder
        (with `functional_names`, also the shards' utterance-level functionals, (N, F))."""
        for stale in self.out.parent.glob(f"{self.out.name}.*tmp"):  # a merge killed midway
            if not _written_by_live_process(stale):
                stale.unlink(missing_ok=True)
        temporary = _temporary(self.out)
        check_room(self.out, sum(shard.stat().st_size for shard in self._shards()), len(order))
        try:
            self._merge(temporary, order, skipped, extra_attrs, functional_names)
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, self.out)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise write_failure(self.out, error) from None
            raise
        shutil.rmtree(self.partial)
        return self.out

    def _merge(self, temporary: Path, order: list[str], skipped: dict[str, str], extra_attrs: dict,
               functional_names: tuple[str, ...]) -> None:
        where = {utt: row for row, utt in enumerate(order)}
        float32_count = 0
        with h5py.File(temporary, "w") as merged:
            merged.attrs.update({**self.attrs, **extra_attrs, "complete": False})
            lengths = np.zeros(len(order), dtype=np.int64)
            fingerprints = [""] * len(order)
            pooled = None
            functionals = None
            if functional_names:
                functionals = merged.create_dataset("functionals", shape=(len(order), len(functional_names)),
                                                    dtype=np.float32)
                merged.create_dataset("functional_names", data=list(functional_names), dtype=h5py.string_dtype())
            features = merged.create_group("features")
            for shard in reversed(self._shards()):  # newest first: a re-extracted utterance wins
                with h5py.File(shard, "r") as f:
                    shard_pooled = _rows(f["pooled"])  # (n, L, 2, D)
                    shard_prints = read_strings(f["fingerprints"]) if "fingerprints" in f else None
                    if pooled is None:
                        pooled = merged.create_dataset("pooled", shape=(len(order), *shard_pooled.shape[1:]),
                                                       dtype=np.float32, chunks=(1, *shard_pooled.shape[1:]),
                                                       fletcher32=True)
                    for position, (utt, length) in enumerate(zip(read_strings(f["ids"]), f["lengths"][()])):
                        if utt not in where or utterance_key(utt) in features:
                            continue
                        key = utterance_key(utt)
                        f.copy(f["features"][key], features, name=key)
                        float32_count += features[key].dtype == np.float32
                        lengths[where[utt]] = length
                        pooled[where[utt]] = shard_pooled[position]
                        fingerprints[where[utt]] = shard_prints[position] if shard_prints else ""
                        if functionals is not None:
                            functionals[where[utt]] = f["functionals"][position]
            missing = [utt for utt in order if utterance_key(utt) not in features]
            if missing:
                raise CacheError(f"internal: {len(missing)} utterances are missing from the shards, e.g. {missing[0]!r}")
            merged.create_dataset("ids", data=order, dtype=h5py.string_dtype())
            merged.create_dataset("lengths", data=lengths)
            merged.create_dataset("fingerprints", data=fingerprints, dtype=h5py.string_dtype())
            skipped_group = merged.create_group("skipped")
            skipped_group.create_dataset("ids", data=list(skipped), dtype=h5py.string_dtype())
            skipped_group.create_dataset("reasons", data=list(skipped.values()), dtype=h5py.string_dtype())
            merged.attrs["float32_utterances"] = int(float32_count)
            merged.attrs["checksums"] = "fletcher32"
            merged.attrs["complete"] = True
