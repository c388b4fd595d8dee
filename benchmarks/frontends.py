"""fbank and mfcc frontends: ser's all-frames-at-once numpy ÷ transformers.audio_utils' per-frame loop.

Both compute the same numbers (tests/features/test_spectral.py); this prints, for each frontend,
the seconds of each over the same clips timed alternately in one run, their ratio, and the
largest difference between their outputs. Also the import time each one costs a fresh process.

    python benchmarks/frontends.py [--clips 200] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
from scipy.fft import dct
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from ser.features.backbones import load_backbone


def transformers_fbank(wave: np.ndarray) -> np.ndarray:
    """(T, 80) as ser's fbank was computed before: transformers' spectrogram."""
    mel = mel_filter_bank(257, 80, 20.0, 8000.0, 16000, mel_scale="kaldi", triangularize_in_mel_space=True)
    return spectrogram(wave, window_function(400, "hann"), 400, 160, 512, power=2.0, center=False,
                       mel_filters=mel, log_mel="log").T


def transformers_mfcc(wave: np.ndarray) -> np.ndarray:
    """(T, 39) as ser's mfcc was computed before: transformers' spectrogram then scipy's DCT."""
    mel = mel_filter_bank(1025, 128, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    db = spectrogram(wave, window_function(1486, "hann"), 1486, 372, 2048, power=2.0, center=True,
                     pad_mode="constant", mel_filters=mel, log_mel="dB", db_range=80.0)
    return dct(db, type=2, axis=0, norm="ortho")[:39].T


def import_seconds(statement: str) -> float:
    """Seconds a fresh interpreter takes to run `statement` (the import cost it adds)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip length (lengths vary ±50%%)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the best of each is kept")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(int(args.seconds * rng.uniform(0.5, 1.5) * 16000))).astype(np.float32)
             for _ in range(args.clips)]
    print(f"{args.clips} clips, {sum(map(len, waves)) / 16000:.0f} s of audio")
    for name, reference in (("fbank", transformers_fbank), ("mfcc", transformers_mfcc)):
        frontend = load_backbone(name)
        ours, theirs = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            computed = frontend.forward(waves)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            expected = [reference(wave) for wave in waves]
            theirs.append(time.perf_counter() - started)
        difference = max(float(np.abs(c[0] - e).max()) for c, e in zip(computed, expected))
        print(f"{name}: ser {min(ours):.2f} s, transformers loop {min(theirs):.2f} s, "
              f"ser/transformers {min(ours) / min(theirs):.3f}, largest difference {difference:.2g}")
    ser_import = import_seconds("import ser.features.frontends")
    transformers_import = import_seconds("import ser.features.frontends, transformers.audio_utils")
    print(f"import: ser frontends {ser_import:.2f} s, with transformers.audio_utils {transformers_import:.2f} s")


if __name__ == "__main__":
    main()
