"""Cache writer/reader: shards merge into one self-describing file; reads, pooled stats, packing."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from ser.errors import CacheError
from ser.features.cache import CacheReader, utterance_key
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures, partial_dir

ATTRS = dict(model="m", source="src", random_init=True, layers=[0, 1, 2], max_seconds=0.0, manifest_sha256="h",
             num_layers=3, dim=4, frame_rate=50.0, sample_rate=16000, dtype="float16")


def states(frames: int, seed: int, scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal((3, frames, 4))).astype(np.float32)  # (L, T, D)


def write_cache(path, items: dict[str, np.ndarray], skipped=None):
    writer = ShardedCacheWriter(path, ATTRS)
    names = list(items)
    writer.write_shard([UtteranceFeatures.from_float32(n, items[n]) for n in names[:2]])
    writer.write_shard([UtteranceFeatures.from_float32(n, items[n]) for n in names[2:]])
    assert writer.done_ids() == set(names)
    return writer.finish(names, skipped or {}, {"num_utterances": len(names)})


def test_roundtrip_read_pooled_and_packed(tmp_path):
    items = {"a/1": states(5, 0), "b.2": states(3, 1), "c": states(7, 2)}
    path = write_cache(tmp_path / "c.h5", items, skipped={"d": "file not found"})
    assert not partial_dir(path).exists()
    with CacheReader(path) as cache:
        assert cache.ids == list(items) and cache.lengths == {"a/1": 5, "b.2": 3, "c": 7}
        assert cache.attrs["complete"] is True and cache.attrs["format"] == "ser-cache"
        assert cache.skipped == {"d": "file not found"}
        for name, value in items.items():
            np.testing.assert_array_equal(cache.read(name), value.astype(np.float16).astype(np.float32))
            np.testing.assert_allclose(cache.pooled(name)[:, 0], value.mean(axis=1), rtol=1e-6)
            np.testing.assert_allclose(cache.pooled(name)[:, 1], value.std(axis=1), rtol=1e-5)
        np.testing.assert_array_equal(cache.read("c", layers=[2, 0]), cache.read("c")[[2, 0]])
        packed = cache.load_all(ids=["c", "a/1"], layers=[1])
        assert packed.frames.shape == (12, 1, 4) and packed.frames.dtype == torch.float16
        x, lengths = packed.batch(torch.tensor([0, 1]))
        np.testing.assert_array_equal(x[0, :, :7].numpy(), cache.read("c", layers=[1]))
        assert lengths.tolist() == [7, 5]
        assert cache.info()["utterances"] == 3 and cache.info()["total_frames"] == 15
        with pytest.raises(CacheError, match="skipped at extraction: file not found"):
            cache.read("d")
        with pytest.raises(CacheError, match="out of range"):
            cache.read("c", layers=[3])
        clone = pickle.loads(pickle.dumps(cache))
        np.testing.assert_array_equal(clone.read("b.2"), cache.read("b.2"))


def test_fp16_overflow_falls_back_to_float32(tmp_path):
    big = states(4, 3, scale=1e5)
    path = write_cache(tmp_path / "o.h5", {"x": states(4, 1), "y": states(2, 2), "big": big})
    with h5py.File(path) as f:
        assert f["features"][utterance_key("big")].dtype == np.float32
        assert f["features"]["x"].dtype == np.float16
    with CacheReader(path) as cache:
        np.testing.assert_array_equal(cache.read("big"), big)
        assert cache.attrs["float32_utterances"] == 1
        assert cache.load_all().frames.dtype == torch.float32


def test_keys_are_reversible_and_safe():
    assert utterance_key("a/b.c") == "a%2Fb%2Ec"
    assert utterance_key("..") != utterance_key(".") and "/" not in utterance_key("x/../y")


def test_reader_refuses_non_caches_and_incomplete_files(tmp_path):
    with pytest.raises(CacheError, match="no feature cache"):
        CacheReader(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match="junk.h5 is not an HDF5 file"):
        CacheReader(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "half.h5", "w") as f:
        f.attrs.update(format="ser-cache", format_version=1, complete=False)
    with pytest.raises(CacheError, match="incomplete"):
        CacheReader(tmp_path / "half.h5")


def test_a_folder_is_refused_naming_a_cache_inside_it(tmp_path):
    """`ser cache info cache` said "no feature cache at cache" of the folder that holds them."""
    cache = write_cache(tmp_path / "cache" / "corpus" / "m.h5", {"a": states(5, 0), "b": states(6, 1)})
    with pytest.raises(CacheError) as refused:
        CacheReader(tmp_path / "cache")
    assert str(refused.value) == f"{tmp_path / 'cache'} is a folder, not a cache file (pass one of its caches, e.g. {cache})"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CacheError, match="empty is a folder, not a cache file .run `ser extract --model M` first.$"):
        CacheReader(tmp_path / "empty")
    (cache.parent / "m.probe").mkdir()  # `ser probe`'s results, beside the cache they came from
    beside = r"m.probe is a folder, not a cache file \(pass the cache beside it, .*m.h5\)$"
    with pytest.raises(CacheError, match=beside):
        CacheReader(cache.parent / "m.probe")


def test_partial_run_of_other_settings_is_refused(tmp_path):
    ShardedCacheWriter(tmp_path / "p.h5", ATTRS).write_shard([UtteranceFeatures.from_float32("a", states(2, 0))])
    with pytest.raises(CacheError, match="made by model"):
        ShardedCacheWriter(tmp_path / "p.h5", dict(ATTRS, source="other"))
    assert ShardedCacheWriter(tmp_path / "p.h5", ATTRS).done_ids() == {"a"}
    assert ShardedCacheWriter(tmp_path / "p.h5", ATTRS, overwrite=True).done_ids() == {"a"}  # same request resumes
    assert ShardedCacheWriter(tmp_path / "p.h5", dict(ATTRS, source="other"), overwrite=True).done_ids() == set()
