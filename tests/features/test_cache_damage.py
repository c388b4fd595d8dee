"""A damaged cache is never read silently: feature bytes carry Fletcher-32 checksums, and every
read error is one CacheError naming the utterance (or the index) and --overwrite."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ser.errors import CacheError
from ser.features.cache import CacheReader, utterance_key
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures

ATTRS = dict(model="m", source="src", random_init=True, layers=[0, 1, 2], max_seconds=0.0, manifest_sha256="h",
             num_layers=3, dim=4, frame_rate=50.0, sample_rate=16000, dtype="float16")


def write_cache(path):
    rng = np.random.default_rng(0)
    items = {name: rng.standard_normal((3, 40, 4)).astype(np.float32) for name in ("a", "b/1", "c")}  # (L, T, D)
    writer = ShardedCacheWriter(path, ATTRS)
    writer.write_shard([UtteranceFeatures.from_float32(name, states) for name, states in items.items()])
    return writer.finish(list(items), {}, {"num_utterances": len(items)})


def flip_bytes_of(path, utt_id: str) -> None:
    with h5py.File(path, "r") as f:
        dataset = f["features"][utterance_key(utt_id)]
        assert dataset.fletcher32
        offset = dataset.id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset + 50)
        original = handle.read(4)
        handle.seek(offset + 50)
        handle.write(bytes(b ^ 0xFF for b in original))


def test_flipped_feature_bytes_are_caught_and_name_the_utterance(tmp_path):
    path = write_cache(tmp_path / "c.h5")
    flip_bytes_of(path, "b/1")
    with CacheReader(path) as cache:
        assert cache.read("a").shape == (3, 40, 4)  # the others still read
        with pytest.raises(CacheError, match=r"damaged: the features of utterance 'b/1' cannot be read") as caught:
            cache.read("b/1")
        assert "--overwrite" in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(CacheError, match="'b/1'"):
            cache.load_all()


def test_damaged_metadata_is_one_line_not_a_key_error(tmp_path):
    path = write_cache(tmp_path / "c.h5")
    with h5py.File(path, "r+") as f:
        del f["lengths"]
    with pytest.raises(CacheError, match=r"damaged: its index .* cannot be read") as caught:
        CacheReader(path)
    assert "\n" not in str(caught.value)
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(CacheError, match="not a readable HDF5 file") as caught:
        CacheReader(path)
    assert "\n" not in str(caught.value)
