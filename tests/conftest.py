"""Suite-wide settings (offline hub, deterministic CPU threads), the synthetic fbank workspace
builder and a process that holds a fold's lock."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)  # tiny models: OpenMP threads only wait on each other


@pytest.fixture(autouse=True)
def one_thread_again_after_each_test():
    """An in-process CLI call sets torch to the CPUs it may use; the next test (and the fixtures it
    builds, such as a reference cache that must match one-thread torchrun ranks bit for bit)
    starts from one thread again, whichever tests its worker ran before."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def build_fbank_workspace():
    """The one builder of "a synthetic workspace with its feature cache" for every test module:
    (root, corpus name, seed, label renames, model, cache name, corpus sizes for prepare_synthetic)
    → root, now holding manifests/<corpus>.csv (audio under data/<corpus>/) and its cache
    cache/<corpus>/<cache name or model>.h5, extracted with `model` (fbank by default)."""
    from ser.data.corpora.synthetic import prepare_synthetic
    from ser.data.manifest import manifest_sha256, read_manifest, utterance_records, write_manifest
    from ser.features.backbones import load_backbone
    from ser.features.extract import extract

    def build(root, corpus="synthetic", seed=0, renamed=None, model="fbank", cache_name=None, **sizes):
        manifest = root / "manifests" / f"{corpus}.csv"
        df = prepare_synthetic(root / "data" / corpus, seed=seed, **sizes)
        write_manifest(df.assign(label=df["label"].replace(renamed or {})), manifest)
        rows = read_manifest(manifest)
        extract(utterance_records(rows, manifest), load_backbone(model),
                root / "cache" / corpus / f"{cache_name or model}.h5", manifest_sha256=manifest_sha256(rows))
        return root

    return build


HOLD_LOCK = ("import sys, time\n"
             "from ser.features.output_lock import exclusive_output\n"
             "with exclusive_output(sys.argv[1], directory=True):\n"
             "    print('held', flush=True)\n"
             "    time.sleep(float(sys.argv[2]))\n")


@pytest.fixture
def held_by_another_process():
    """hold(output, seconds=300) → another process that holds output's lock (as a `ser train` of
    that fold would) for that long, or until the test ends."""
    holders = []

    def hold(output, seconds: float = 300.0) -> subprocess.Popen:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output), str(seconds)], stdout=subprocess.PIPE,
                                  text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()
