"""The final merge checks for room first: a file-size limit hit there is one WriteError naming the
cache, and the shards already written are kept for the rerun (the limit is set in-process and
restored; Python ignores SIGXFSZ, so the write fails with EFBIG)."""

from __future__ import annotations

import resource

import pytest

from ser.errors import WriteError
from ser.features.backbones import load_backbone
from ser.features.audio import load_audio
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures, partial_dir
from ser.features.extract import cache_identity, extract
from ser.features.fingerprint import fingerprint


def test_a_limit_hit_at_the_merge_keeps_the_shards_for_the_rerun(audio_files, tmp_path):
    records = audio_files([0.5 + 0.1 * i for i in range(8)])
    backbone = load_backbone("fbank")
    out = tmp_path / "c.h5"
    writer = ShardedCacheWriter(out, cache_identity(backbone.source, False, range(backbone.num_layers), None, ""))
    for record in records:  # an interrupted run left one small shard per utterance
        wave = load_audio(record)
        writer.write_shard([UtteranceFeatures.from_float32(record.id, backbone.forward([wave])[0],
                                                           fingerprint(record, wave))])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))  # each shard fits, the merged file does not
    try:
        with pytest.raises(WriteError, match=r"cannot write .*c\.h5: File too large"):
            extract(records, backbone, out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not out.exists() and len(list(partial_dir(out).glob("shard-*.h5"))) == 8
    assert not list(tmp_path.glob("*.tmp"))
    summary = extract(records, backbone, out)
    assert (summary.extracted, summary.reused) == (0, 8)
