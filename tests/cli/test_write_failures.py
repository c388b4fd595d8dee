"""Write failures end with one line naming the path and the cause (exit 2), keep finished work,
and a rerun once the cause is gone completes. The file-size limit (EFBIG) is set with
`resource.setrlimit(RLIMIT_FSIZE)` in a real `ser extract` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ser.data.corpora.synthetic import prepare_synthetic
from ser.data.extraction import extract_corpus
from ser.data.manifest import write_manifest
from ser.errors import WriteError
from ser.features.cache import CacheReader
from ser.features.cache_writer import partial_dir

LIMITED = textwrap.dedent(
    """
    import resource, sys
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    sys.argv = ["ser", *sys.argv[2:]]
    from ser.cli import run
    run()
    """
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("write-failures")
    write_manifest(prepare_synthetic(root / "data", speakers=2, sessions=1, per_class=1, seed=0),
                   root / "manifests" / "synthetic.csv")
    return root


def workspace(corpus: Path, tmp_path: Path) -> Path:
    (tmp_path / "manifests").mkdir()
    text = (corpus / "manifests" / "synthetic.csv").read_text().replace("../data/", f"{corpus}/data/")
    (tmp_path / "manifests" / "synthetic.csv").write_text(text)
    return tmp_path


def extract_under_limit(workdir: Path, limit: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), "extract", "--model", "fbank", "--workdir",
                           str(workdir)], capture_output=True, text=True, env=env, timeout=200)


def test_a_file_size_limit_is_one_line_and_a_rerun_completes(corpus, tmp_path):
    root = workspace(corpus, tmp_path)
    limited = extract_under_limit(root, 100_000)
    assert limited.returncode == 2, limited.stderr[-3000:]
    lines = [line for line in limited.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines[0].startswith("error: cannot write ") and lines[0].endswith("shard-000001.h5: File too large"), lines
    assert "ulimit -f" in lines[1] and "Traceback" not in limited.stderr
    cache = root / "cache" / "synthetic" / "fbank.h5"
    assert not cache.exists() and not list(partial_dir(cache).glob("*.tmp"))

    summary = extract_corpus(root, "fbank", device="cpu")  # the cause removed: no limit
    assert summary.extracted == 8
    with CacheReader(cache) as reader:
        assert len(reader.ids) == 8


def test_an_output_path_that_is_a_folder_or_under_a_file_is_one_clear_error(corpus, tmp_path):
    root = workspace(corpus, tmp_path)
    folder = root / "out.h5"
    folder.mkdir()
    with pytest.raises(WriteError, match=r"cannot write .*out\.h5: Is a directory"):
        extract_corpus(root, "fbank", out=folder, device="cpu")
    (root / "cache").write_text("a file where the cache folder goes")
    with pytest.raises(WriteError, match=r"cannot write .*fbank\.h5: Not a directory"):
        extract_corpus(root, "fbank", device="cpu")
