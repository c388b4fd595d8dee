"""Extraction under torchrun (2 CPU ranks, gloo): the same cache as one process, bit for bit, and a
killed rank resumes. Real torchrun launches of real processes on a tiny random wavlm model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from ser.data.manifest import manifest_sha256, read_manifest, utterance_records
from ser.features.backbones import load_backbone
from ser.features.cache_writer import partial_dir
from ser.features.distributed import balanced_shares
from ser.features.extract import extract

pytestmark = pytest.mark.slow

# A rank of a torchrun launch that extracts slowly (so that the test can kill it mid-run), flushes
# a shard after every batch and leaves its pid beside the cache.
SLOW_RANK = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from ser.data.manifest import manifest_sha256, read_manifest, utterance_records
    from ser.features.backbones import load_backbone
    from ser.features.distributed import join_extraction_group
    from ser.features.extract import extract

    class Slow:
        def __init__(self, inner):
            self.inner = inner
        def __getattr__(self, name):
            return getattr(self.inner, name)
        def forward(self, waves, full_precision=False):
            time.sleep(0.5)
            return self.inner.forward(waves, full_precision)

    manifest, model, out = map(Path, sys.argv[1:4])
    (out.parent / f"pid-rank{os.environ['RANK']}").write_text(str(os.getpid()))
    rows = read_manifest(manifest)
    extract(utterance_records(rows, manifest), Slow(load_backbone(str(model))), out,
            manifest_sha256=manifest_sha256(rows), flush_seconds=0.0, group=join_extraction_group("cpu"))
    """
)


def torchrun(*args: str) -> list[str]:
    """The argv of a 2-rank torchrun launch on this machine (a free port of its own)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]


def environment() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


def h5_contents(path: Path) -> dict:
    """Every dataset's bytes and every attribute of an HDF5 file (the creation time left out)."""
    found = {}
    with h5py.File(path, "r") as f:
        found["attrs"] = {k: np.asarray(v).tolist() for k, v in f.attrs.items() if k != "created"}

        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                found[name] = (item.dtype.str, item.shape, item[()].tobytes() if item.dtype.kind != "O" else
                               [bytes(v) if isinstance(v, bytes) else v for v in item[()].tolist()])

        f.visititems(visit)
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model_dir):
    """12 utterances of distinct lengths (one batch each for group-norm wavlm), a manifest and the
    cache one process makes of them."""
    root = tmp_path_factory.mktemp("torchrun")
    (root / "audio").mkdir()
    (root / "manifests").mkdir()
    rows = ["id,path"]
    for i in range(12):
        wave = 0.1 * np.random.default_rng(i).standard_normal(int(16000 * (0.3 + 0.04 * i)))
        sf.write(root / "audio" / f"u{i}.wav", wave.astype(np.float32), 16000)
        rows.append(f"u{i},../audio/u{i}.wav")
    manifest = root / "manifests" / "toy.csv"
    manifest.write_text("\n".join(rows) + "\n")
    model = tiny_model_dir("wavlm")
    table = read_manifest(manifest)
    reference = root / "reference.h5"
    extract(utterance_records(table, manifest), load_backbone(str(model)), reference, manifest_sha256=manifest_sha256(table))
    return root, manifest, model, reference


def test_balanced_shares_are_disjoint_complete_and_even():
    costs = [5, 1, 1, 1, 1, 1, 4, 3, 3]
    shares = balanced_shares(costs, 2)
    assert sorted(i for share in shares for i in share) == list(range(len(costs)))
    assert all(share == sorted(share) for share in shares)
    assert sorted(sum(costs[i] for i in share) for share in shares) == [10, 10]
    assert balanced_shares([1, 2], 3)[2] == []


def test_a_killed_rank_resumes_and_the_cache_equals_one_process_bitwise(corpus, tmp_path):
    """One launch is killed (SIGKILL to rank 1, torchrun stops rank 0); the same `ser extract`
    under torchrun then finishes the work over both ranks from every shard left behind."""
    root, manifest, model, reference = corpus
    out = tmp_path / "cache.h5"
    launch = subprocess.Popen(
        torchrun("--no-python", sys.executable, "-c", SLOW_RANK, str(manifest), str(model), str(out)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment(),
    )
    deadline = time.monotonic() + 180
    while not list(partial_dir(out).glob("shard-*-rank1.h5")):
        assert launch.poll() is None, launch.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "rank 1 wrote no shard in time"
        time.sleep(0.05)
    os.kill(int((tmp_path / "pid-rank1").read_text()), signal.SIGKILL)
    assert launch.wait(timeout=120) != 0  # torchrun stops the other rank and fails
    launch.stderr.close()
    assert not out.exists() and list(partial_dir(out).glob("shard-*-rank1.h5"))

    resumed = subprocess.run(
        torchrun("-m", "ser.cli", "extract", "--model", str(model), "--workdir", str(root), "--out", str(out)),
        capture_output=True, text=True, env=environment(), timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("extracted ") == 1, resumed.stdout  # rank 0 reports for both
    extracted = int(resumed.stdout.split("extracted ")[1].split(",")[0])
    reused = int(resumed.stdout.split("resumed ")[1].split(",")[0])
    assert reused >= 1 and extracted >= 2 and extracted + reused == 12
    assert h5_contents(out) == h5_contents(reference)
    assert not partial_dir(out).exists()
