"""openSMILE's classic feature sets as a one-layer backbone (the optional `opensmile` package).

- `egemaps`: eGeMAPS v02, 25 low-level descriptors per 10-ms frame; 88 functionals per utterance.
- `compare`: ComParE 2016, 65 low-level descriptors per 10-ms frame; 6,373 functionals.

The low-level descriptors (LLDs) are the cached frames (1, T, D); the functionals, computed by
openSMILE over the whole utterance, are stored beside the pooled statistics
(`CacheReader.functionals`). openSMILE frames 16-kHz audio every 160 samples once 800 samples (its
longest analysis window at the first frame) are available: T = 1 + (n − 800) // 160; a shorter
clip gives one all-NaN frame, which extraction skips as unusable.
"""

from __future__ import annotations

import warnings

import numpy as np

from ser.errors import ModelLoadError
from ser.features.backbone import SAMPLE_RATE, Backbone

HOP, FIRST_FRAME = 160, 800
FEATURE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}


def _opensmile():
    try:
        import opensmile
    except ImportError:
        raise ModelLoadError(
            "the eGeMAPS/ComParE features need the opensmile package", "pip install 'ser[opensmile]'"
        ) from None
    return opensmile


class OpenSmileBackbone(Backbone):
    """openSMILE LLDs every 10 ms as frames, plus the feature set's functionals per utterance."""

    def __init__(self, name: str):
        opensmile = _opensmile()
        feature_set = getattr(opensmile.FeatureSet, FEATURE_SETS[name])
        self._lld = opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self._functionals = opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals)
        self.feature_names = tuple(self._lld.feature_names)
        self.functional_names = tuple(self._functionals.feature_names)
        super().__init__(
            name=name, source=f"ser:{name}", revision=f"opensmile-{opensmile.__version__}/{FEATURE_SETS[name]}",
            random_init=False, num_layers=1, dim=len(self.feature_names), frame_rate=SAMPLE_RATE / HOP,
            batching="frontend",
        )

    def num_frames(self, num_samples: int) -> int:
        return 1 + (num_samples - FIRST_FRAME) // HOP if num_samples >= FIRST_FRAME else 1

    def _process(self, smile, wave: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "Segment too short, filling with NaN": extraction reports it
            warnings.simplefilter("ignore", UserWarning)
            return smile.process_signal(np.asarray(wave, dtype=np.float32), SAMPLE_RATE).to_numpy(np.float32)

    def forward(self, waves: list[np.ndarray], full_precision: bool = False) -> list[np.ndarray]:
        return [np.ascontiguousarray(self._process(self._lld, wave)[None]) for wave in waves]  # (1, T, D) each

    def utterance_functionals(self, wave: np.ndarray) -> np.ndarray:
        """The feature set's functionals over the whole wave: (F,) float32."""
        return self._process(self._functionals, wave)[0]  # (F,)
