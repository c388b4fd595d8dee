"""Text extraction: transcripts → every hidden layer of a text encoder → the same HDF5 cache
format as audio (one (L, T, D) block per utterance, T = tokens), crash-safe and resumable through
the shared shard writer. The cache's root attributes add `modality="text"`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures, existing_cache_is_complete
from ser.features.records import UtteranceRecord
from ser.features.text_backbones import TextBackbone


@dataclass(frozen=True)
class TextExtractionResult:
    path: Path
    utterances: int  # encoded now (0 when the cache was already complete)
    seconds: float


def text_cache_attrs(backbone: TextBackbone, manifest_sha256: str) -> dict:
    """Root attributes of a text cache (the audio cache's names; rates are 0 for tokens)."""
    return {
        "model": backbone.name, "source": backbone.source, "revision": backbone.revision,
        "random_init": bool(backbone.random_init), "transformers_version": backbone.transformers_version,
        "sample_rate": 0, "frame_rate": 0.0, "num_layers": backbone.num_layers, "dim": backbone.dim,
        "dtype": "float16", "manifest_sha256": manifest_sha256, "modality": "text",
    }


def extract_text(
    records: list[UtteranceRecord], backbone: TextBackbone, out: Path, manifest_sha256: str,
    batch_size: int = 32, overwrite: bool = False,
) -> TextExtractionResult:
    """Encode each record's `text` (empty when None) into `out`; resumes an interrupted run."""
    started = time.perf_counter()
    out = Path(out)
    attrs = text_cache_attrs(backbone, manifest_sha256)
    if existing_cache_is_complete(out, attrs, overwrite):
        return TextExtractionResult(out, 0, time.perf_counter() - started)
    writer = ShardedCacheWriter(out, attrs, overwrite=overwrite)
    done = writer.done_ids()
    todo = [record for record in records if record.id not in done]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        states = backbone.forward([record.text or "" for record in chunk])  # [(L, T, D)]
        writer.write_shard([UtteranceFeatures.from_float32(r.id, s) for r, s in zip(chunk, states)])
    writer.finish([record.id for record in records], {}, {})
    return TextExtractionResult(out, len(todo), time.perf_counter() - started)
