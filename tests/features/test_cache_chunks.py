"""The direct reader: its Fletcher-32 agrees with HDF5's own (chunks that HDF5 wrote pass, changed
ones fail), and reads past the page cache give what plain reads give."""

from __future__ import annotations

import errno
import fcntl
import os

import h5py
import numpy as np
import pytest

from ser.features import cache_chunks
from ser.features.cache import CacheReader
from ser.features.cache_chunks import checksum_matches, open_blocks
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures

# byte lengths around the checksum's rows (4,096 words = 8,192 bytes), odd ones included
LENGTHS = [1, 2, 3, 5, 8191, 8192, 8193, 8194, 3 * 8192 + 7, 1_000_001, 13 * 60 * 768 * 2]


def hdf5_chunks(path, arrays: list[np.ndarray]) -> list[bytes]:
    """Each array written by HDF5 as one Fletcher-32 chunk; the chunks' bytes as stored (data + sum)."""
    with h5py.File(path, "w") as f:
        for i, array in enumerate(arrays):
            f.create_dataset(str(i), data=array, chunks=array.shape, fletcher32=True)
    with h5py.File(path, "r") as f:
        return [f[str(i)].id.read_direct_chunk((0,) * array.ndim)[1] for i, array in enumerate(arrays)]


def arrays_of(lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [data for n in lengths for data in (rng.integers(0, 256, n, dtype=np.uint8),
                                               np.full(n, 0xFF, np.uint8))]  # all ones: the largest sums


def test_chunks_written_by_hdf5_pass_and_changed_ones_fail(tmp_path):
    rng = np.random.default_rng(1)
    arrays = arrays_of(LENGTHS) + [rng.standard_normal((13, 60, 768)).astype(np.float16)]  # (L, T, D)
    for chunk in hdf5_chunks(tmp_path / "c.h5", arrays):
        assert checksum_matches(chunk)
        assert checksum_matches(np.frombuffer(chunk, np.uint8))
        for where in {0, len(chunk) // 2, len(chunk) - 5, len(chunk) - 1}:  # a data byte, the sum's last byte
            changed = bytearray(chunk)
            changed[where] ^= 0x01
            assert not checksum_matches(changed), (len(chunk), where)


def test_a_chunk_longer_than_the_rows_allow_widens_them(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_chunks, "MAX_ROWS", 3)  # 3 rows of 4,096 words: longer data takes wider rows
    for chunk in hdf5_chunks(tmp_path / "c.h5", arrays_of([3 * 8192 + 2, 7 * 8192 + 9, 100_001])):
        assert checksum_matches(chunk)


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_tiny_inputs_sum_like_hdf5(length):
    data = bytes(range(1, length + 1))
    words = [(data[i] << 8) | (data[i + 1] if i + 1 < length else 0) for i in range(0, length, 2)]
    sum1 = sum(words) % 65535
    sum2 = sum((len(words) - i) * w for i, w in enumerate(words)) % 65535
    assert cache_chunks.fletcher32(data) == (sum1, sum2)


def write_cache(path) -> dict[str, np.ndarray]:
    """A real cache whose blocks (3-700 frames × 3 × 40 float16) start and end anywhere in 4-KiB blocks."""
    rng = np.random.default_rng(2)
    items = {f"u{i}": rng.standard_normal((3, int(n), 40)).astype(np.float32) for i, n in
             enumerate(rng.integers(3, 700, 12))}  # (L, T, D)
    writer = ShardedCacheWriter(path, dict(model="m", source="src", random_init=True, manifest_sha256="h",
                                           num_layers=3, dim=40, frame_rate=50.0, dtype="float16"))
    writer.write_shard([UtteranceFeatures.from_float32(utt, states) for utt, states in items.items()])
    writer.finish(list(items), {}, {"num_utterances": len(items)})
    return items


def test_reads_past_the_page_cache_give_what_plain_reads_give(tmp_path):
    items = write_cache(tmp_path / "c.h5")
    with CacheReader(tmp_path / "c.h5") as plain, CacheReader(tmp_path / "c.h5", page_cache=False) as direct:
        for utt, states in items.items():
            assert np.array_equal(direct.block(utt), states.astype(np.float16))
            assert np.array_equal(direct.block(utt, [2, 0]), plain.block(utt, [2, 0]))
        if not fcntl.fcntl(direct._chunks()[1], fcntl.F_GETFL) & os.O_DIRECT:
            pytest.skip("this file system refuses O_DIRECT")


def test_a_file_system_that_refuses_o_direct_gets_a_plain_descriptor(tmp_path, monkeypatch):
    path = tmp_path / "c.h5"
    path.write_bytes(b"x" * 10)
    plain_open = os.open

    def refuse_direct(name, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return plain_open(name, flags, *args)

    monkeypatch.setattr(os, "open", refuse_direct)
    fd = open_blocks(path, page_cache=False)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and os.read(fd, 10) == b"x" * 10
    finally:
        os.close(fd)
