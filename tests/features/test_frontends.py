"""fbank and mfcc frontends: shapes, frame rates and that they measure the spectrum."""

from __future__ import annotations

import numpy as np

from ser.features.backbones import load_backbone


def tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_fbank_shape_and_peak_band():
    fbank = load_backbone("fbank")
    assert (fbank.num_layers, fbank.dim, fbank.frame_rate, fbank.batching) == (1, 80, 100.0, "frontend")
    low, high = fbank.forward([tone(300, 1.0), tone(3000, 1.0)])
    assert low.shape == high.shape == (1, 98, 80) and fbank.num_frames(16000) == 98
    assert low[0].mean(axis=0).argmax() < high[0].mean(axis=0).argmax()
    assert np.isfinite(low).all()


def test_mfcc_shape_and_frame_rate():
    mfcc = load_backbone("mfcc")
    (states,) = mfcc.forward([tone(440, 2.0)])
    assert states.shape == (1, 1 + 32000 // 372, 39) and mfcc.num_frames(32000) == states.shape[1]
    assert abs(mfcc.frame_rate - 43.01) < 0.01
    a, b = mfcc.forward([tone(440, 1.0), tone(2500, 1.0)])
    assert not np.allclose(a, b)
