"""`write_probe` on a 13-layer cache extracted by a real tiny WavLM (12 transformer layers)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ser.data.corpora.synthetic import prepare_synthetic
from ser.data.manifest import manifest_sha256, read_manifest, utterance_records, write_manifest
from ser.features.backbones import load_backbone
from ser.features.extract import extract
from ser.studies.probe_study import write_probe
from ser.training.probe import ALL_LAYERS, ProbeProtocol, probe_cache_path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A 32-clip synthetic corpus (4 speakers, 2 sessions) and its cache from a random 12-layer WavLM (D=32)."""
    from transformers import AutoModel, WavLMConfig

    root = tmp_path_factory.mktemp("probe13")
    torch.manual_seed(0)
    config = WavLMConfig(hidden_size=32, num_hidden_layers=12, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    AutoModel.from_config(config).save_pretrained(root / "tiny-wavlm")
    manifest = root / "manifests" / "synthetic.csv"
    write_manifest(prepare_synthetic(root / "data", speakers=4, sessions=2, per_class=2, seed=0), manifest)
    rows = read_manifest(manifest)
    extract(utterance_records(rows, manifest), load_backbone(str(root / "tiny-wavlm")),
            root / "cache" / "synthetic" / "tiny-wavlm.h5", manifest_sha256=manifest_sha256(rows))
    return root


def test_every_layer_and_all_layers_are_probed_and_drawn(workspace: Path):
    outcome = write_probe(workspace, ProbeProtocol(dev_fraction=0.25))
    assert outcome.out_dir == workspace / "runs" / "synthetic" / "tiny-wavlm" / "probe-categorical-default-auto0.25-s0"
    table = pd.read_csv(outcome.out_dir / "probe.csv", dtype={"layer": str, "fold": str})
    assert list(dict.fromkeys(table["layer"])) == [str(i) for i in range(13)] + [ALL_LAYERS]
    assert set(table["fold"]) == {"Ses01", "Ses02"}
    summary = pd.read_csv(outcome.out_dir / "probe_summary.csv", dtype={"layer": str})
    for _, row in summary.iterrows():
        part = table[table["layer"] == row["layer"]]
        assert row["ua_mean"] == pytest.approx(part["ua"].mean()) and row["n"] == 2
        assert row["ua_std"] == pytest.approx(np.std(part["ua"], ddof=1))  # sample std, as the heads' rows
    assert outcome.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and outcome.figure.stat().st_size > 10_000
    # every layer under the protocol: kept beside the cache for `ser report`
    assert probe_cache_path(workspace / "cache" / "synthetic" / "tiny-wavlm.h5", ProbeProtocol(dev_fraction=0.25)).is_file()


def test_selected_layers_only(workspace: Path, tmp_path: Path):
    outcome = write_probe(workspace, layers=[0, 12], out=tmp_path)
    assert list(outcome.summary["layer"]) == ["0", "12", ALL_LAYERS]
    assert (tmp_path / "probe.png").is_file()
