"""Self-supervised speech encoders from transformers: WavLM, HuBERT, wav2vec 2.0, data2vec-audio.

Group-norm models (the "base" ones) normalise their first conv layer over the whole clip, so any
padding changes every frame: they only ever see equal-length batches (usually one utterance).
Layer-norm models ("large") batch padded waves with an attention mask. data2vec-audio is a
layer-norm model too, but its five stacked positional convolutions carry padding into the valid
frames whatever the mask (measured: differences of the order of the features themselves), so it
batches like a group-norm model. Layer-norm models (data2vec included) were pretrained on
zero-mean unit-variance input, so each wave is normalised first.
"""

from __future__ import annotations

import numpy as np
import torch

from ser.features.backbone import SAMPLE_RATE, Backbone

SPEECH_MODEL_TYPES = ("wavlm", "hubert", "wav2vec2", "data2vec-audio")


def conv_output_frames(num_samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Frames after the conv feature encoder: (n − k) // s + 1 per layer (0 if too short)."""
    n = num_samples
    for kernel, stride in zip(kernels, strides):
        if n < kernel:
            return 0
        n = (n - kernel) // stride + 1
    return n


def uses_group_norm(config) -> bool:
    """data2vec-audio has no `feat_extract_norm` and always uses layer norm."""
    return getattr(config, "feat_extract_norm", "layer") == "group"


def padding_is_safe(config) -> bool:
    """Whether padded batches with an attention mask give the single-utterance features."""
    return not uses_group_norm(config) and config.model_type != "data2vec-audio"


def attention_bytes_per_pair(config) -> int:
    """Bytes held per pair of frames (T² of them) at the peak of one transformer layer, measured
    against tiny models (tests/features/test_memory_guard.py):
    - WavLM always runs its own attention: int64 relative-position buckets (first layer) and, per
      head, the position bias, its gated copy, the scores and their softmax in float32;
    - eager attention: scores, softmax and probabilities per head in float32;
    - SDPA on one unpadded wave: memory-efficient kernels, no T² term."""
    heads = int(config.num_attention_heads)
    if config.model_type == "wavlm":
        return 32 + 14 * heads
    if getattr(config, "_attn_implementation", "eager") == "eager":
        return 12 * heads
    return 0


class SpeechBackbone(Backbone):
    """All L+1 hidden states of a transformers speech encoder (CNN + transformer)."""

    def __init__(self, model: torch.nn.Module, *, name: str, source: str, revision: str, random_init: bool,
                 device: str, autocast_dtype: torch.dtype | None):
        config = model.config
        group_norm = uses_group_norm(config)
        super().__init__(
            name=name, source=source, revision=revision, random_init=random_init,
            num_layers=config.num_hidden_layers + 1, dim=config.hidden_size,
            frame_rate=SAMPLE_RATE / float(np.prod(config.conv_stride)),
            batching="masked" if padding_is_safe(config) else "single", device=device,
        )
        self.model = model.eval().to(device)
        self.normalize_input = not group_norm
        self.autocast_dtype = autocast_dtype
        self._kernels = tuple(config.conv_kernel)
        self._strides = tuple(config.conv_stride)
        self._conv_channels = int(config.conv_dim[0])
        self._intermediate = int(config.intermediate_size)
        self.attention_bytes_per_pair = attention_bytes_per_pair(config)

    def num_frames(self, num_samples: int) -> int:
        return conv_output_frames(num_samples, self._kernels, self._strides)

    def peak_memory_bytes(self, num_samples: int) -> int:
        """Besides the states: the first conv layer's output (C, n / stride) in float32 three times
        over (conv, norm, GELU), one feed-forward block, and attention's T² terms
        (`attention_bytes_per_pair`)."""
        frames = self.num_frames(num_samples)
        conv = 3 * 4 * self._conv_channels * (num_samples // self._strides[0])
        feed_forward = 4 * 2 * frames * (self._intermediate + 4 * self.dim)
        return super().peak_memory_bytes(num_samples) + conv + feed_forward + frames**2 * self.attention_bytes_per_pair

    def _prepare(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.normalize_input:
            waves = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in waves]
        lengths = [len(w) for w in waves]
        if len(set(lengths)) == 1:
            return torch.from_numpy(np.stack(waves)).to(self.device), None  # (B, n)
        if self.batching == "single":
            raise ValueError(f"{self.name} must never see padding: batch only equal-length waves")
        x = np.zeros((len(waves), max(lengths)), dtype=np.float32)  # (B, n_max)
        mask = np.zeros((len(waves), max(lengths)), dtype=np.int64)  # (B, n_max)
        for row, wave in enumerate(waves):
            x[row, : len(wave)] = wave
            mask[row, : len(wave)] = 1
        return torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device)

    def forward(self, waves: list[np.ndarray], full_precision: bool = False) -> list[np.ndarray]:
        x, mask = self._prepare(waves)
        autocast = self.autocast_dtype is not None and not full_precision
        device_type = torch.device(self.device).type
        with torch.inference_mode(), torch.autocast(device_type, dtype=self.autocast_dtype, enabled=autocast):
            out = self.model(x, attention_mask=mask, output_hidden_states=True)
        # transformers >= 5 gives pre-LN models' last entry before the final LayerNorm: use the output
        states = torch.stack([*out.hidden_states[:-1], out.last_hidden_state], dim=1)  # (B, L, T, D)
        states = states.float().cpu().numpy()
        return [np.ascontiguousarray(states[row, :, : self.num_frames(len(wave))]) for row, wave in enumerate(waves)]
