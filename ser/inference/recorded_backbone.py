"""The features a trained head expects, and the backbone that computes them for new audio.

A fold directory's `features.json` (run_dir.write_features_record) copies the root attributes of
the cache the head was trained from: backbone source and revision, random-init flag, the stored
layers, `max_seconds`, frame rate. Runs trained before that file existed are matched to their
cache through the workspace convention (`<root>/cache/<corpus>/<model>.h5` above the run).

Loading is offline by default. The backbone is, in order of precedence: `--model DIR` (a local
copy), a `backbone/` folder saved inside the fold directory (a fine-tuned backbone), or the
recorded source (a weight-free frontend, a local folder, or a hub id found in the local hub cache).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ser.data.workspace import model_slug
from ser.errors import ModelLoadError, TrainingError
from ser.features.backbone import Backbone
from ser.training import run_dir as files

FOLD_BACKBONE = "backbone"  # a backbone folder saved with a fold (save_pretrained layout)
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


def read_features_record(fold_dir: Path, config: dict) -> dict:
    """The fold's features.json, or (older runs) the attributes of its cache found in the workspace."""
    record_path = Path(fold_dir) / files.FEATURES
    if record_path.is_file():
        hint = files.retrain_hint(fold_dir)
        return check_features_record(files.read_json_file(record_path, hint), record_path, hint)
    cache = _workspace_cache(Path(fold_dir), config)
    if cache is None:
        raise TrainingError(
            f"{fold_dir} has no {files.FEATURES} and its cache cannot be found above it",
            "retrain the run with this version of ser (it records the features it was trained on)",
        )
    return files.features_record(cache)


def check_features_record(record: dict, path: Path, hint: str) -> dict:
    """`record` if the numbers prediction relies on are sane (clip length, frame rate, longest
    utterance: positive and finite, where present), else `damaged_file`'s one line naming `path`."""
    for key in ("max_seconds", "frame_rate", "longest_frames", "sample_rate"):
        value = record.get(key)
        if value is None or (key in ("max_seconds", "longest_frames") and value == 0):  # absent, no crop, unknown
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise files.damaged_file(path, hint, f"its {key} {value!r} is not a positive number")
    return record


def _workspace_cache(fold_dir: Path, config: dict) -> Path | None:
    """`<root>/cache/<corpus>/<model>.h5` in the nearest folder above the run that has one."""
    corpus, model = config.get("corpus"), config.get("model")
    if not corpus or not model:
        return None
    for folder in fold_dir.resolve().parents:
        candidate = folder / "cache" / corpus / f"{model_slug(model)}.h5"
        if candidate.is_file():
            return candidate
    return None


def commit_hash(record: dict) -> str | None:
    """The hub commit the backbone's weights came from, when the record holds one."""
    revision = str(record.get("revision") or "")
    return revision if COMMIT_HASH.match(revision) else None


def backbone_reference(record: dict) -> dict:
    """What identifies the backbone of a features record (for export and model cards)."""
    return {
        "id": record.get("model"), "source": record.get("source"), "revision": record.get("revision"),
        "commit_hash": commit_hash(record), "random_init": bool(record.get("random_init")),
        "transformers_version": record.get("transformers_version"),
    }


def _how_to_get(source: str) -> str:
    folder = source.rstrip("/").split("/")[-1]
    return (f"on a connected machine run `hf download {source} --local-dir {folder}`, copy the folder here and "
            f"pass `--model ./{folder}`; or pass --allow-download")


def load_recorded_backbone(
    record: dict,
    *,
    fold_backbone: Path | None = None,
    model_dir: Path | None = None,
    allow_download: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> Backbone:
    """The backbone that computes the record's features (offline unless `allow_download`); raises
    ModelLoadError with the command that fetches a missing model, or when its shape does not match."""
    from ser.features.backbones import BACKBONES, load_backbone

    source, name = str(record["source"]), str(record.get("model") or record["source"])
    options = dict(device=device, precision=precision)
    if model_dir is not None:
        if not Path(model_dir).is_dir():
            raise ModelLoadError(f"--model {model_dir} is not a folder", "pass the folder of a local copy of the backbone")
        backbone = load_backbone(str(Path(model_dir).resolve()), **options)
    elif fold_backbone is not None and fold_backbone.is_dir():
        backbone = load_backbone(str(fold_backbone.resolve()), **options)
    elif source.startswith("ser:"):
        backbone = load_backbone(source.removeprefix("ser:"), **options)
    elif record.get("random_init"):
        alias = name if name in BACKBONES else source
        backbone = load_backbone(alias, random_init=True, allow_download=allow_download, **options)
    elif os.path.isabs(source):
        if not os.path.isdir(source):
            raise ModelLoadError(f"the run's backbone folder {source} is not on this machine",
                                 f"pass --model DIR with a copy of it ({name})")
        backbone = load_backbone(source, **options)
    else:
        try:
            backbone = load_backbone(source, allow_download=allow_download, **options)
        except ModelLoadError:
            raise ModelLoadError(f"the run's backbone {source} is not on this machine and downloads are off",
                                 _how_to_get(source)) from None
    _check_matches(backbone, record, overridden=model_dir is not None)
    return backbone


def _check_matches(backbone: Backbone, record: dict, overridden: bool) -> None:
    """The backbone must produce the recorded layer count and width (and, from the hub, the same commit)."""
    layers = int(record.get("model_num_layers") or record["num_layers"])
    if backbone.num_layers != layers or backbone.dim != int(record["dim"]):
        raise ModelLoadError(
            f"backbone {backbone.source} gives {backbone.num_layers} layers × {backbone.dim}, the run was trained on "
            f"{layers} × {record['dim']} ({record.get('source')})",
            "pass --model DIR with the backbone the run was trained on",
        )
    recorded, loaded = commit_hash(record), commit_hash({"revision": backbone.revision})
    if not overridden and recorded and loaded and recorded != loaded:
        raise ModelLoadError(
            f"the run was trained on commit {recorded[:10]} of {record.get('source')}, this machine has {loaded[:10]}",
            "fetch that revision, or pass --model DIR to use this copy anyway",
        )
