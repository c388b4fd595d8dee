"""Backbones loaded from tiny saved models: shapes, frame counts, batching per family, loading errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ser.errors import ModelLoadError, UnknownNameError, UserInputError
from ser.features.backbones import BACKBONES, load_backbone

FAMILIES = {  # family → (batching, layers incl. embeddings, dim)
    "wavlm": ("single", 3, 32),
    "hubert": ("single", 3, 32),
    "wav2vec2": ("single", 3, 32),
    "wav2vec2-large": ("masked", 3, 32),
    "data2vec": ("single", 3, 32),  # its stacked positional convs leak padding past any mask
    "whisper": ("whisper", 3, 32),
}


def waves(*seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [0.1 * rng.standard_normal(int(s * 16000)).astype(np.float32) for s in seconds]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shapes_and_frame_counts(tiny_model_dir, family):
    batching, layers, dim = FAMILIES[family]
    backbone = load_backbone(str(tiny_model_dir(family)))
    assert (backbone.batching, backbone.num_layers, backbone.dim) == (batching, layers, dim)
    assert backbone.frame_rate == 50.0 and not backbone.random_init and backbone.revision == "local"
    expected = {1.0: 50 if family == "whisper" else 49, 0.7: 35 if family == "whisper" else 34}
    for seconds, frames in expected.items():
        (states,) = backbone.forward(waves(seconds))
        assert states.shape == (layers, frames, dim) and states.dtype == np.float32
        assert backbone.num_frames(int(seconds * 16000)) == frames


def test_layer_norm_batch_matches_single_within_fp16(tiny_model_dir):
    backbone = load_backbone(str(tiny_model_dir("wav2vec2-large")))
    assert backbone.batching == "masked"
    batch = waves(1.0, 0.43, 0.77)
    together = backbone.forward(batch)
    for wave, batched in zip(batch, together):
        (alone,) = backbone.forward([wave])
        assert batched.shape == alone.shape
        np.testing.assert_allclose(batched, alone, atol=2e-3 * np.abs(alone).max(), rtol=1e-3)


def test_group_norm_backbone_refuses_padding(tiny_model_dir):
    backbone = load_backbone(str(tiny_model_dir("wavlm")))
    with pytest.raises(ValueError, match="never see padding"):
        backbone.forward(waves(1.0, 0.5))
    backbone = load_backbone(str(tiny_model_dir("data2vec")))
    with pytest.raises(ValueError, match="never see padding"):
        backbone.forward(waves(1.0, 0.5))


def test_whisper_windows_long_clips(tiny_model_dir):
    backbone = load_backbone(str(tiny_model_dir("whisper")))
    (states,) = backbone.forward(waves(31.0))
    assert states.shape == (3, 1550, 32)  # 1500 frames for the first 30 s + 50 for the last second
    (first,) = backbone.forward([waves(31.0)[0][: 30 * 16000]])
    np.testing.assert_allclose(states[:, :1500], first, atol=1e-5)


def test_random_init_is_reproducible_and_real_architecture():
    overrides = dict(num_hidden_layers=1)
    a = load_backbone("wavlm-base", random_init=True, config_overrides=overrides)
    b = load_backbone("wavlm-base", random_init=True, config_overrides=overrides)
    assert (a.num_layers, a.dim, a.batching, a.revision) == (2, 768, "single", "random-init")
    np.testing.assert_array_equal(a.forward(waves(0.5))[0], b.forward(waves(0.5))[0])
    large = load_backbone("data2vec-large", random_init=True, config_overrides=dict(num_hidden_layers=1))
    assert (large.dim, large.batching) == (1024, "single")


def test_frontends_in_registry():
    for name in ("fbank", "mfcc", "wavlm-base", "whisper-large-v3", "hubert-large", "data2vec-base"):
        assert name in BACKBONES
    assert load_backbone("fbank").num_layers == 1


def test_missing_hub_model_fails_fast_with_download_hint():
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as caught:
        load_backbone("microsoft/wavlm-base")
    assert time.perf_counter() - started < 10
    assert "hf download microsoft/wavlm-base --local-dir" in caught.value.hint
    assert "--model" in caught.value.hint


def test_unknown_alias_suggests_close_names():
    with pytest.raises(UnknownNameError, match="wavlm-bse") as caught:
        load_backbone("wavlm-bse")
    assert "wavlm-base" in caught.value.hint


def test_a_path_that_is_no_model_folder_says_so(tmp_path, monkeypatch):
    """`--model ./wavlm` (a typo in a folder name) said "unknown model './wavlm'", as for an alias,
    and a file path said the same."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    for given in ("./wavlm", str(tmp_path / "wavlm"), "../wavlm"):
        with pytest.raises(UserInputError, match=f"--model {given}: no such folder"):
            load_backbone(given)
    with pytest.raises(UserInputError, match="--model weights.bin is a file, not a model folder"):
        load_backbone("weights.bin")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_backbone(str(tmp_path))


@pytest.mark.parametrize("config", ["{}", '{"model_type": "no-such-architecture"}'])
def test_a_config_json_transformers_cannot_read_is_one_line(tmp_path, config):
    """Both were transformers' ValueError traceback."""
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ModelLoadError, match=f"{tmp_path}/config.json is not a transformers model config"):
        load_backbone(str(tmp_path))


def test_a_frontend_checks_the_device_it_is_given():
    """`ser extract --model fbank --device tpu` (or cuda without a GPU) ran on the CPU without a word."""
    with pytest.raises(UserInputError, match="unknown device 'tpu'"):
        load_backbone("fbank", device="tpu")


class _RunsCode:
    """A pickle that would create `marker` when unpickled (what a malicious pytorch_model.bin holds)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_as_one_line(tiny_model_dir, tmp_path, wave_file):
    """transformers loads pytorch_model.bin with weights_only and refuses the pickle; that refusal
    was a traceback. Now one ModelLoadError, in the library and through the real CLI."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import torch

    folder, marker = tmp_path / "evil-model", tmp_path / "code-ran"
    folder.mkdir()
    shutil.copy(tiny_model_dir("wav2vec2") / "config.json", folder / "config.json")
    torch.save({"weights": _RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickled objects .* refused"):
        load_backbone(str(folder))
    assert not marker.exists()

    (tmp_path / "ws" / "manifests").mkdir(parents=True)
    wave_file(tmp_path / "ws" / "a.wav", 0.5)
    (tmp_path / "ws" / "manifests" / "clips.csv").write_text("id,path\na,../a.wav\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-m", "ser.cli", "extract", "--model", str(folder), "--workdir",
                             str(tmp_path / "ws"), "--device", "cpu"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "pytorch_model.bin holds pickled objects" in result.stderr and not marker.exists()


def test_a_truncated_safetensors_backbone_is_one_line(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "truncated"
    shutil.copytree(tiny_model_dir("wav2vec2"), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="weights file cannot be read"):
        load_backbone(str(folder))
