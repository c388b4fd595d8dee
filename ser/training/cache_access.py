"""Where loaded features live (the training device, the GPU when the cache fits, else RAM) and
which manifest rows a cache can serve (it must be of the same manifest and hold every row)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from ser.data.manifest import manifest_sha256, utterance_records
from ser.errors import CacheError, UserInputError
from ser.features.backbone import resolve_device as resolve_device_name
from ser.features.cache import CacheReader
from ser.features.fingerprint import changed_sources


def resolve_device(device: str) -> torch.device:
    """`auto` → the first GPU when there is one, else the CPU; other names are checked."""
    return torch.device(resolve_device_name(device))


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (free physical pages where that file does not exist)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def feature_home(size_bytes: int, device: torch.device) -> torch.device:
    """Where the packed cache lives: the GPU when it fits with room for the heads, else the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if size_bytes < 0.6 * free:
            return device
    return torch.device("cpu")


def refuse_layers_outside(layers: list[int], num_layers: int) -> None:
    """Refuse an empty choice of layers, or layers a cache of `num_layers` does not hold: one
    wording for training and the probe."""
    outside = [layer for layer in layers if not 0 <= layer < num_layers]
    if outside or not layers:
        raise UserInputError(f"layers {outside or layers} are not in the cache", f"it has layers 0-{num_layers - 1}")


def cached_rows(reader: CacheReader, cache: Path, manifest: Path, df: pd.DataFrame, table: pd.DataFrame,
                 layers: list[int] | None) -> pd.DataFrame:
    """The rows of `table` the cache holds (unreadable audio dropped); refuses a cache of another
    manifest, rows missing from it and layers it does not have."""
    if reader.attrs.get("manifest_sha256") != manifest_sha256(df):
        raise CacheError(
            f"the cache {cache} was extracted from a different manifest than {manifest}",
            "re-run `ser extract` for this manifest (or pass the matching --manifest)",
        )
    table = table[~table["id"].isin(list(reader.skipped))].reset_index(drop=True)  # unreadable audio
    missing = [utt for utt in table["id"] if utt not in reader.lengths]
    if missing:
        raise CacheError(f"{len(missing)} utterances of the manifest are not in the cache, e.g. {missing[0]}")
    if layers:
        refuse_layers_outside(layers, reader.num_layers)
    check_sources_unchanged(reader, cache, manifest, df, set(table["id"]))
    return table


def check_sources_unchanged(reader: CacheReader, cache: Path, manifest: Path, df: pd.DataFrame, ids: set[str]) -> None:
    """Refuse a cache whose source audio changed after extraction (it would serve old features)."""
    records = [record for record in utterance_records(df, manifest) if record.id in ids]
    changed = changed_sources(records, reader.fingerprints, reader.attrs.get("max_seconds") or None)
    if changed:
        path = next(record.path for record in records if record.id == changed[0])
        raise CacheError(
            f"the audio of {len(changed)} utterance(s) changed after {cache} was made, e.g. {changed[0]} ({path})",
            "run the same `ser extract` command again: it re-extracts the changed utterances",
        )
