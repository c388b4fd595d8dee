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


def flip_pooled_row(path, row: int) -> None:
    """Flip bytes inside one checksummed pooled row (chunks are one row each)."""
    with h5py.File(path, "r") as f:
        dataset = f["pooled"]
        assert dataset.fletcher32 and dataset.chunks[0] == 1
        offset = dataset.id.get_chunk_info_by_coord((row,) + (0,) * (dataset.ndim - 1)).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset + 8)
        original = handle.read(4)
        handle.seek(offset + 8)
        handle.write(bytes(b ^ 0xFF for b in original))


def forge_frames(path, utt_id: str, frames: int, index_too: bool = False) -> None:
    """Replace an utterance's features by a dataset that declares `frames` frames (and holds none)."""
    with h5py.File(path, "r+") as f:
        key = utterance_key(utt_id)
        del f["features"][key]
        f["features"].create_dataset(key, shape=(3, frames, 4), dtype=np.float16, chunks=(3, 1024, 4))
        if index_too:
            row = [str(s) for s in f["ids"].asstr()[()]].index(utt_id)
            f["lengths"][row] = frames


def test_a_failed_pooled_checksum_is_one_line_naming_the_utterance(tmp_path):
    path = write_cache(tmp_path / "c.h5")
    flip_pooled_row(path, 1)  # "b/1"
    with CacheReader(path) as cache:
        assert cache.pooled("a").shape == (3, 2, 4)
        for read in (lambda: cache.pooled_rows(["a", "c"]), lambda: cache.pooled_rows(cache.ids, layer=0),
                     lambda: cache.load_all()):  # training reads the frames, and now the pooled rows with them
            with pytest.raises(CacheError, match=r"damaged: the pooled statistics of utterance 'b/1' cannot be read") as caught:
                read()
            assert "--overwrite" in str(caught.value) and "\n" not in str(caught.value)
        assert cache.damage() == {}  # headers are fine
        assert list(cache.damage(verify=True)) == ["b/1"]  # the checksums are not


@pytest.mark.parametrize("index_too", [False, True], ids=["dataset", "dataset-and-index"])
def test_a_dataset_declaring_2_to_the_40_frames_is_refused_before_any_allocation(tmp_path, index_too):
    path = write_cache(tmp_path / "c.h5")
    forge_frames(path, "c", 2**40, index_too)
    if index_too:  # the index itself declares more than the file holds: refused on opening
        with pytest.raises(CacheError, match=r"damaged: its index declares 1099511627856 frames \(.* TiB of "
                                             r"features\), more than the .* file holds") as caught:
            CacheReader(path)
        assert "\n" not in str(caught.value) and "--overwrite" in str(caught.value)
        return
    with CacheReader(path) as cache:
        assert cache.read("a").shape == (3, 40, 4)
        for read in (lambda: cache.read("c"), lambda: cache.load_all()):
            with pytest.raises(CacheError, match=r"damaged: the features of utterance 'c' declare shape "
                                                 r"\(3, 1099511627776, 4\), the index says \(3, 40, 4\)") as caught:
                read()
            assert "\n" not in str(caught.value)
        assert list(cache.damage()) == ["c"]  # found from the headers alone


def test_a_dataset_that_holds_fewer_bytes_than_its_shape_needs_is_damaged(tmp_path):
    path = write_cache(tmp_path / "c.h5")
    with h5py.File(path, "r+") as f:  # the right shape, but no chunk was ever written
        del f["features"]["a"]
        f["features"].create_dataset("a", shape=(3, 40, 4), dtype=np.float16, chunks=(3, 40, 4))
    with CacheReader(path) as cache:
        with pytest.raises(CacheError, match=r"'a' hold 0 of the 960 bytes their shape needs"):
            cache.read("a")
        assert list(cache.damage()) == ["a"]
