"""Crash safety: a real subprocess killed with SIGKILL mid-run, then resumed, equals an
uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np

from ser.features.audio import load_audio
from ser.features.backbones import load_backbone
from ser.features.cache import CacheReader
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures, partial_dir
from ser.features.extract import cache_identity, extract

CHILD = textwrap.dedent(
    """
    import sys, time, json
    import torch
    torch.set_num_threads(1)
    from ser.features.backbones import load_backbone
    from ser.features.extract import cache_identity, extract
    from ser.features.records import UtteranceRecord

    class Slow:  # the real backbone, slowed down so the parent can kill it mid-run
        def __init__(self, inner):
            self.inner = inner
        def __getattr__(self, name):
            return getattr(self.inner, name)
        def forward(self, waves, full_precision=False):
            time.sleep(0.15)
            return self.inner.forward(waves, full_precision)

    model, out, records = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    records = [UtteranceRecord(**r) for r in records]
    extract(records, Slow(load_backbone(model)), out, manifest_sha256="m", flush_seconds=0.0)
    """
)


def assert_same_cache(a, b):
    with CacheReader(a) as left, CacheReader(b) as right:
        assert left.ids == right.ids and left.lengths == right.lengths
        for utt in left.ids:
            np.testing.assert_array_equal(left.read(utt), right.read(utt))
            np.testing.assert_array_equal(left.pooled(utt), right.pooled(utt))
        keep = ("source", "num_layers", "dim", "layers", "manifest_sha256", "complete", "num_utterances")
        assert {k: left.attrs[k] for k in keep} == {k: right.attrs[k] for k in keep}


def test_sigkill_then_resume_equals_uninterrupted(tiny_model_dir, audio_files, tmp_path):
    model = str(tiny_model_dir("wavlm"))
    records = audio_files([0.4 + 0.05 * i for i in range(16)])
    killed = tmp_path / "killed.h5"
    argv = [sys.executable, "-c", CHILD, model, str(killed), json.dumps([r.__dict__ for r in records])]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(partial_dir(killed).glob("shard-*.h5"))) < 3:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not killed.exists()

    backbone = load_backbone(model)
    resumed = extract(records, backbone, killed, manifest_sha256="m")
    assert resumed.reused >= 3 and resumed.extracted == len(records) - resumed.reused
    assert not partial_dir(killed).exists()
    extract(records, backbone, tmp_path / "whole.h5", manifest_sha256="m")
    assert_same_cache(killed, tmp_path / "whole.h5")


def test_interrupted_merge_is_redone(audio_files, tmp_path):
    """A run killed while merging leaves the shards and a stale .tmp; the rerun finishes."""
    records = audio_files([0.5, 0.6, 0.7])
    backbone = load_backbone("fbank")
    out = tmp_path / "m.h5"
    extract(records, backbone, tmp_path / "ref.h5")

    writer = ShardedCacheWriter(out, cache_identity(backbone.source, False, [0], None, ""))
    writer.write_shard([UtteranceFeatures.from_float32(r.id, backbone.forward([load_audio(r)])[0]) for r in records[:2]])
    with h5py.File(out.with_name(out.name + ".tmp"), "w") as stale:
        stale.attrs["complete"] = False
    summary = extract(records, backbone, out)
    assert (summary.reused, summary.extracted) == (2, 1)
    assert not out.with_name(out.name + ".tmp").exists()
    with CacheReader(out) as a, CacheReader(tmp_path / "ref.h5") as b:
        for utt in b.ids:
            np.testing.assert_array_equal(a.read(utt), b.read(utt))
