"""Changed audio is never served from the cache: each utterance records a fingerprint of its source;
`extract` re-extracts changed utterances (also from shards of an interrupted run), and training
refuses a cache whose sources changed, naming one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ser.errors import CacheError
from ser.features.audio import load_audio
from ser.features.backbones import load_backbone
from ser.features.cache import CacheReader
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures
from ser.features.extract import cache_identity, extract
from ser.features.fingerprint import fingerprint
from ser.features.records import UtteranceRecord


def replace_audio(record: UtteranceRecord, wave_file, seed: int) -> None:
    """New content under the same name (as a re-export or a copy over it would leave)."""
    stamp = os.stat(record.path).st_mtime_ns
    wave_file(Path(record.path), 0.45, seed=seed)
    os.utime(record.path, ns=(stamp + 10**9, stamp + 10**9))


def fresh_features(record: UtteranceRecord, tmp_path: Path) -> np.ndarray:
    out = tmp_path / f"fresh-{abs(hash(record.id))}.h5"
    extract([record], load_backbone("fbank"), out)
    with CacheReader(out) as cache:
        return cache.read(record.id)


def test_extract_redoes_changed_utterances_only(audio_files, wave_file, tmp_path):
    records = audio_files([0.3, 0.4, 0.5])
    backbone = load_backbone("fbank")
    out = tmp_path / "c.h5"
    extract(records, backbone, out)
    with CacheReader(out) as cache:
        before = {utt: cache.read(utt) for utt in cache.ids}

    os.utime(records[2].path, ns=(1, 1))  # touched, same samples: nothing to redo
    assert extract(records, backbone, out).already_complete

    replace_audio(records[1], wave_file, seed=7)
    summary = extract(records, backbone, out)
    assert (summary.extracted, summary.reused, summary.already_complete) == (1, 2, False)
    with CacheReader(out) as cache:
        assert cache.ids == [r.id for r in records]
        np.testing.assert_array_equal(cache.read(records[1].id), fresh_features(records[1], tmp_path))
        for record in (records[0], records[2]):
            np.testing.assert_array_equal(cache.read(record.id), before[record.id])
    assert extract(records, backbone, out).already_complete


def test_stale_shards_of_an_interrupted_run_are_not_merged(audio_files, wave_file, tmp_path):
    records = audio_files([0.3, 0.4, 0.5])
    backbone = load_backbone("fbank")
    out = tmp_path / "c.h5"
    writer = ShardedCacheWriter(out, cache_identity(backbone.source, False, range(backbone.num_layers), None, ""))
    waves = [load_audio(r) for r in records[:2]]
    writer.write_shard([UtteranceFeatures.from_float32(r.id, backbone.forward([w])[0], fingerprint(r, w))
                        for r, w in zip(records[:2], waves)])  # what an interrupted run left
    replace_audio(records[0], wave_file, seed=9)
    summary = extract(records, backbone, out, overwrite=True)
    assert (summary.extracted, summary.reused) == (2, 1)
    with CacheReader(out) as cache:
        np.testing.assert_array_equal(cache.read(records[0].id), fresh_features(records[0], tmp_path))


def test_training_refuses_a_cache_whose_audio_changed(audio_files, wave_file, tmp_path):
    from ser.data.manifest import manifest_sha256, read_manifest, utterance_records
    from ser.training.loading import load_training_data

    records = audio_files([0.3, 0.4, 0.5, 0.6])
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path,label\n" + "".join(f"{r.id},{r.path},{'ab'[i % 2]}\n" for i, r in enumerate(records)))
    rows = read_manifest(manifest)
    extract(utterance_records(rows, manifest), load_backbone("fbank"), tmp_path / "c.h5",
            manifest_sha256=manifest_sha256(rows))
    assert len(load_training_data(manifest, tmp_path / "c.h5", device="cpu").ids) == 4
    replace_audio(records[2], wave_file, seed=5)
    with pytest.raises(CacheError, match=rf"audio of 1 utterance\(s\) changed .* e\.g\. {records[2].id} "):
        load_training_data(manifest, tmp_path / "c.h5", device="cpu")
