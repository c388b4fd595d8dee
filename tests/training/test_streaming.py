"""Streamed training computes what in-memory training computes, bit for bit; the stream's
producer thread stops with the loop and hands its errors over."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from ser.data.manifest import manifest_sha256, read_manifest, write_manifest
from ser.data.workspace import Workspace
from ser.errors import CacheError
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures
from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.loop import train_fold
from ser.training.protocol import protocol_folds
from ser.training.streaming import stream_batches


@pytest.fixture(scope="module")
def fbank(tmp_path_factory, build_fbank_workspace):
    return Workspace(build_fbank_workspace(tmp_path_factory.mktemp("ws"), speakers=4, sessions=2, per_class=3))


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """A 4-layer, 16-channel cache written by the real writer (lengths 1-40 frames), 4 speakers in 2 sessions."""
    root = tmp_path_factory.mktemp("layered")
    rng = np.random.default_rng(0)
    count = 40
    rows = pd.DataFrame({"id": [f"u{i:03d}" for i in range(count)], "path": [f"a/{i}.wav" for i in range(count)],
                         "label": rng.choice(["ang", "hap", "neu", "sad"], count),
                         "session": [f"Ses{i % 2 + 1:02d}" for i in range(count)],
                         "speaker": [f"s{i % 4}" for i in range(count)]})
    manifest = root / "manifests" / "layered.csv"
    write_manifest(rows, manifest)
    out = root / "cache" / "layered" / "fbank.h5"
    out.parent.mkdir(parents=True)
    writer = ShardedCacheWriter(out, {"model": "fbank", "source": "fbank", "random_init": False, "num_layers": 4,
                                      "dim": 16, "frame_rate": 100.0, "dtype": "float16",
                                      "manifest_sha256": manifest_sha256(read_manifest(manifest))})
    writer.write_shard([UtteranceFeatures.from_float32(utt, rng.standard_normal((4, int(n), 16)).astype(np.float32))
                        for utt, n in zip(rows["id"], rng.integers(1, 41, count))])
    writer.finish(list(rows["id"]), {}, {})
    return manifest, out


def config(**changes) -> TrainConfig:
    options = dict(epochs=2, batch_size=4, lr=1e-3, warmup_epochs=1, seed=0, standardize=True)
    return TrainConfig.create("shiftcnn", {"shift_proportion": "1/8"}, **{**options, **changes})


def trained(data, fold, out, run_config):
    metrics = train_fold(run_config, data, fold, out)
    return metrics, torch.load(out / files.MODEL, weights_only=True)["state_dict"]


def assert_same_run(memory, streamed):
    (metrics_a, state_a), (metrics_b, state_b) = memory, streamed
    assert metrics_a == metrics_b
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_streamed_fbank_training_equals_in_memory_bit_for_bit(fbank, tmp_path):
    manifest, cache = fbank.manifest_for("synthetic"), fbank.cache_path("synthetic", "fbank")
    memory = load_training_data(manifest, cache, device="cpu", stream=False)
    streamed = load_training_data(manifest, cache, device="cpu", stream=True)
    assert streamed.streamed and not memory.streamed
    fold = protocol_folds(config(), memory)[0]
    assert_same_run(trained(memory, fold, tmp_path / "memory", config()),
                    trained(streamed, fold, tmp_path / "stream", config()))


@pytest.mark.parametrize("layers", [None, [3, 1]])
def test_streamed_layers_equal_in_memory(layered, layers, tmp_path):
    manifest, cache = layered
    memory = load_training_data(manifest, cache, layers=layers, device="cpu", stream=False)
    streamed = load_training_data(manifest, cache, layers=layers, device="cpu", stream=True, workers=3)
    run_config = config(layers=layers, folds="session")
    fold = protocol_folds(run_config, memory)[0]
    assert_same_run(trained(memory, fold, tmp_path / "memory", run_config),
                    trained(streamed, fold, tmp_path / "stream", run_config))


def test_leaving_the_stream_early_stops_its_producer(layered):
    _, cache = layered
    ids = [f"u{i:03d}" for i in range(40)]
    batches = [np.arange(i, i + 4) for i in range(0, 40, 4)]
    before = threading.active_count()
    for _ in stream_batches(cache, ids, None, batches, depth=1):
        break
    assert threading.active_count() == before


def test_a_damaged_block_is_a_cache_error_in_the_loop(layered, tmp_path):
    _, cache = layered
    broken = tmp_path / "broken.h5"
    data = bytearray(cache.read_bytes())
    from ser.features.cache import CacheReader

    with CacheReader(cache) as reader:
        place = reader._chunks()[0].place("u005")
    data[place.offset + 3] ^= 0xFF  # one byte of u005's features
    broken.write_bytes(bytes(data))
    ids = [f"u{i:03d}" for i in range(40)]
    with pytest.raises(CacheError, match="u005"):
        list(stream_batches(broken, ids, None, [np.arange(0, 8)]))


def test_a_cpu_batch_is_the_gather_it_replaces():
    from ser.features.packed import PackedFeatures

    lengths = torch.tensor([3, 1, 5, 2])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    frames = torch.randn(int(lengths.sum()), 3, 4).half()  # (ΣT, L, D)
    rows = torch.tensor([2, 0, 3])
    x, got = PackedFeatures(["a", "b", "c", "d"], frames, offsets).batch(rows)
    steps = torch.arange(5)
    valid = steps[None, :] < lengths[rows][:, None]  # (B, T)
    index = torch.where(valid, offsets[rows][:, None] + steps[None, :], 0)
    expected = (frames[index].float() * valid[:, :, None, None]).permute(0, 2, 1, 3)  # (B, L, T, D)
    assert torch.equal(got, lengths[rows]) and torch.equal(x, expected) and x.stride() == expected.stride()
