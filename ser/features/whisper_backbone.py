"""The Whisper encoder: log-mel input always padded to 30 s; the valid frames are sliced out.

A clip over 30 s is cut into 30-s windows whose valid frames are concatenated. The encoder's
frame rate is 50 Hz: a window of n samples has ceil(n / 160) valid mel frames and
ceil(mel / 2) valid encoder frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ser.features.backbone import SAMPLE_RATE, Backbone

WINDOW_SAMPLES = 30 * SAMPLE_RATE
MEL_HOP = 160


def window_frames(num_samples: int) -> int:
    """Valid encoder frames of one ≤ 30-s window."""
    return math.ceil(math.ceil(num_samples / MEL_HOP) / 2)


def split_windows(wave: np.ndarray) -> list[np.ndarray]:
    """Consecutive ≤ 30-s pieces of a wave."""
    return [wave[start : start + WINDOW_SAMPLES] for start in range(0, len(wave), WINDOW_SAMPLES)]


class WhisperBackbone(Backbone):
    """All encoder layers (embeddings + each block, the last after the final LayerNorm)."""

    def __init__(self, encoder: torch.nn.Module, feature_extractor, *, name: str, source: str, revision: str,
                 random_init: bool, device: str, autocast_dtype: torch.dtype | None, max_windows: int = 8):
        config = encoder.config
        super().__init__(
            name=name, source=source, revision=revision, random_init=random_init,
            num_layers=config.encoder_layers + 1, dim=config.d_model, frame_rate=SAMPLE_RATE / (2 * MEL_HOP),
            batching="whisper", device=device,
        )
        self.encoder = encoder.eval().to(device)
        self.feature_extractor = feature_extractor
        self.autocast_dtype = autocast_dtype
        self.max_windows = max_windows

    def num_frames(self, num_samples: int) -> int:
        full, rest = divmod(num_samples, WINDOW_SAMPLES)
        return full * window_frames(WINDOW_SAMPLES) + (window_frames(rest) if rest else 0)

    def peak_memory_bytes(self, num_samples: int) -> int:
        """Besides the states: one call's windows (log-mel input, encoder states, eager attention's
        T² per head) and every window's encoder states before the valid frames are sliced out."""
        windows = max(1, math.ceil(num_samples / WINDOW_SAMPLES))
        frames = window_frames(WINDOW_SAMPLES)
        states = 4 * self.num_layers * frames * self.dim  # (L, 1500, D) float32 of one window
        eager = getattr(self.encoder.config, "_attn_implementation", "eager") == "eager"
        attention = 12 * self.encoder.config.encoder_attention_heads * frames**2 if eager else 0
        mel = 4 * self.encoder.config.num_mel_bins * 2 * frames
        call = min(windows, self.max_windows) * (mel + 3 * states + attention)
        return super().peak_memory_bytes(num_samples) + call + 2 * windows * states

    def _encode(self, windows: list[np.ndarray], full_precision: bool) -> np.ndarray:
        mel = self.feature_extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
        x = torch.from_numpy(np.asarray(mel, dtype=np.float32)).to(self.device)  # (W, mels, 3000)
        autocast = self.autocast_dtype is not None and not full_precision
        device_type = torch.device(self.device).type
        with torch.inference_mode(), torch.autocast(device_type, dtype=self.autocast_dtype, enabled=autocast):
            out = self.encoder(x, output_hidden_states=True)
        states = torch.stack([*out.hidden_states[:-1], out.last_hidden_state], dim=1)  # (W, L, 1500, D)
        return states.float().cpu().numpy()

    def forward(self, waves: list[np.ndarray], full_precision: bool = False) -> list[np.ndarray]:
        pieces = [split_windows(wave) for wave in waves]
        windows = [window for utterance in pieces for window in utterance]
        encoded = np.concatenate(
            [self._encode(windows[i : i + self.max_windows], full_precision) for i in range(0, len(windows), self.max_windows)]
        )  # (W, L, 1500, D)
        out, position = [], 0
        for utterance in pieces:
            valid = [encoded[position + k, :, : window_frames(len(w))] for k, w in enumerate(utterance)]
            out.append(np.ascontiguousarray(np.concatenate(valid, axis=1)))  # (L, T, D)
            position += len(utterance)
        return out
