"""Tiny random transformers models saved to disk (loaded through the real loading code) and
synthetic audio files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

TINY_CONV = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
LAYER_NORM = dict(feat_extract_norm="layer", do_stable_layer_norm=True)


def _tiny_config(family: str):
    from transformers import (Data2VecAudioConfig, HubertConfig, Wav2Vec2Config, WavLMConfig, WhisperConfig)

    if family == "wavlm":
        return WavLMConfig(**TINY_CONV)
    if family == "hubert":
        return HubertConfig(**TINY_CONV)
    if family == "wav2vec2":
        return Wav2Vec2Config(**TINY_CONV)
    if family == "wav2vec2-large":
        return Wav2Vec2Config(**TINY_CONV, **LAYER_NORM)
    if family == "wavlm-large":
        return WavLMConfig(**TINY_CONV, **LAYER_NORM)
    if family == "data2vec":
        return Data2VecAudioConfig(**dict(TINY_CONV, num_conv_pos_embeddings=5))
    if family == "whisper":
        return WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                             decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, vocab_size=128, pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3,
                             max_target_positions=64, num_mel_bins=80)
    raise ValueError(family)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """`tiny_model_dir(family)` → a folder with config.json + random weights (built once)."""
    from transformers import AutoModel

    built: dict[str, Path] = {}

    def build(family: str) -> Path:
        if family not in built:
            torch.manual_seed(1)
            folder = tmp_path_factory.mktemp(f"tiny-{family}")
            AutoModel.from_config(_tiny_config(family)).save_pretrained(folder)
            built[family] = folder
        return built[family]

    return build


def write_audio(path: Path, seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0, **kw) -> Path:
    """Noise plus a tone, written with soundfile (format from the suffix)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(n)
    data = np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave
    sf.write(path, data.astype(np.float32), rate, **kw)
    return path


@pytest.fixture
def wave_file():
    """The `write_audio` helper as a fixture."""
    return write_audio


@pytest.fixture
def audio_files(tmp_path):
    """`audio_files(seconds_list)` → UtteranceRecords of synthetic 16-kHz WAVs."""
    from ser.features.records import UtteranceRecord

    def make(durations, prefix="utt"):
        records = []
        for i, seconds in enumerate(durations):
            path = write_audio(tmp_path / f"{prefix}{i}.wav", seconds, seed=i)
            records.append(UtteranceRecord(f"{prefix}/{i}", str(path)))
        return records

    return make


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and OpenMP spin-waits badly on a busy 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
