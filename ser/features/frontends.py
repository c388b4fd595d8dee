"""Weight-free frontends: log-mel filterbanks and MFCCs, stored as a one-layer cache.

- `fbank`: 80 log-mel bands (natural log), 25 ms Hann window, 10 ms hop, 512-point FFT, Kaldi's
  mel formula 20 Hz–8 kHz, no centring (frames = 1 + (n − 400) // 160): 100 frames per second.
  It is a transformers-style log-mel spectrogram, not Kaldi's fbank (no dither, pre-emphasis, DC
  removal or Povey window), so its values differ from torchaudio.compliance.kaldi.fbank's.
- `mfcc`: 39 MFCCs with TIM-Net's settings (librosa defaults at 22.05 kHz: 2048-sample window,
  512-sample hop) kept as durations at 16 kHz: a 1486-sample (92.9 ms) Hann window zero-padded to
  a 2048-point FFT, a 372-sample (23.25 ms) hop, centred with zero padding (frames = 1 + n // 372),
  128 Slaney mel bands, power in dB clipped 80 dB below the utterance's peak, orthonormal DCT-II.
"""

from __future__ import annotations

import numpy as np

from ser.features.backbone import SAMPLE_RATE, Backbone
from ser.features.spectral import kaldi_mel_filters, mel_power, periodic_hann, power_to_db, slaney_mel_filters

FBANK_WINDOW, FBANK_HOP, FBANK_FFT, FBANK_BANDS = 400, 160, 512, 80
MFCC_WINDOW, MFCC_HOP, MFCC_FFT, MFCC_BANDS, MFCC_COEFFICIENTS = 1486, 372, 2048, 128, 39


class FbankFrontend(Backbone):
    """80 log-mel filterbank energies every 10 ms."""

    def __init__(self, name: str = "fbank"):
        super().__init__(
            name=name, source=f"ser:{name}", revision="builtin", random_init=False,
            num_layers=1, dim=FBANK_BANDS, frame_rate=SAMPLE_RATE / FBANK_HOP, batching="frontend",
        )
        self._window = periodic_hann(FBANK_WINDOW)
        self._mel = kaldi_mel_filters(FBANK_FFT, FBANK_BANDS, 20.0, SAMPLE_RATE / 2, SAMPLE_RATE)  # (257, 80)

    def num_frames(self, num_samples: int) -> int:
        return 1 + (num_samples - FBANK_WINDOW) // FBANK_HOP

    def forward(self, waves: list[np.ndarray], full_precision: bool = False) -> list[np.ndarray]:
        return [np.log(mel_power(wave, self._window, FBANK_HOP, FBANK_FFT, self._mel)).astype(np.float32)[None]
                for wave in waves]  # each (1, T, 80)


class MfccFrontend(Backbone):
    """39 MFCCs with TIM-Net's window and hop durations (≈ 43 frames per second)."""

    def __init__(self, name: str = "mfcc"):
        super().__init__(
            name=name, source=f"ser:{name}", revision="builtin", random_init=False,
            num_layers=1, dim=MFCC_COEFFICIENTS, frame_rate=SAMPLE_RATE / MFCC_HOP, batching="frontend",
        )
        self._window = periodic_hann(MFCC_WINDOW)
        self._mel = slaney_mel_filters(MFCC_FFT, MFCC_BANDS, 0.0, SAMPLE_RATE / 2, SAMPLE_RATE)  # (1025, 128)

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // MFCC_HOP

    def forward(self, waves: list[np.ndarray], full_precision: bool = False) -> list[np.ndarray]:
        from scipy.fft import dct  # imported here: 0.7 s that the fbank frontend does not need

        out = []
        for wave in waves:
            power = mel_power(wave, self._window, MFCC_HOP, MFCC_FFT, self._mel, center=True)  # (T, 128)
            db = power_to_db(power, db_range=80.0).astype(np.float32)  # (T, 128), float32 as transformers returns it
            coefficients = dct(db, type=2, axis=1, norm="ortho")[:, :MFCC_COEFFICIENTS]  # (T, 39)
            out.append(np.ascontiguousarray(coefficients[None], dtype=np.float32))  # (1, T, 39)
        return out
