"""Cache what stays frozen: the CNN feature encoder's output, extracted once with the regular
extraction loop and HDF5 writer as a one-layer cache (the `conv` layer, (1, T, C)), so that
fine-tuning epochs start at the feature projection instead of at the waveform.

The file lives at `cache/<corpus>/conv/<model>[-random]-max<S>.h5` (a sub-folder, so that
`ser train`'s "the only cache" default never picks it up). Its `source` names the backbone plus
`#conv`, so it is never mistaken for (or reused as) a hidden-state cache; like any cache it is
resumable and refused when the manifest changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ser.data.manifest import manifest_sha256, read_manifest, utterance_records
from ser.data.workspace import Workspace, model_slug
from ser.features.backbone import Backbone
from ser.features.extract import extract
from ser.features.output_lock import exclusive_output
from ser.features.hf_backbones import SpeechBackbone, uses_group_norm

CONV_LAYER = "conv"


class ConvEncoderBackbone(Backbone):
    """The frozen CNN encoder of a speech model as a one-layer backbone: wave → (1, T, C)."""

    def __init__(self, speech: SpeechBackbone):
        config = speech.model.config
        super().__init__(
            name=f"{speech.name}:{CONV_LAYER}", source=f"{speech.source}#{CONV_LAYER}", revision=speech.revision,
            random_init=speech.random_init, num_layers=1, dim=config.conv_dim[-1], frame_rate=speech.frame_rate,
            batching="single" if uses_group_norm(config) else "masked", device=speech.device,
        )
        self.speech = speech

    def num_frames(self, num_samples: int) -> int:
        return self.speech.num_frames(num_samples)

    def forward(self, waves: list[np.ndarray], full_precision: bool = False) -> list[np.ndarray]:
        x, _ = self.speech._prepare(waves)  # (B, n), normalised for layer-norm models
        with torch.inference_mode():
            conv = self.speech.model.feature_extractor(x).transpose(1, 2)  # (B, T, C)
        conv = conv.float().cpu().numpy()
        return [np.ascontiguousarray(conv[row, : self.num_frames(len(wave))])[None] for row, wave in enumerate(waves)]


def conv_cache_path(workspace: Workspace, corpus: str, model: str, random_init: bool, max_seconds: float | None) -> Path:
    suffix = ("-random" if random_init else "") + (f"-max{max_seconds:g}" if max_seconds else "")
    return workspace.cache_dir / corpus / CONV_LAYER / f"{model_slug(model)}{suffix}.h5"


def build_conv_cache(manifest: Path, speech: SpeechBackbone, out: Path, max_seconds: float | None,
                     show_progress: bool = False) -> Path:
    """Extract (or finish, or reuse) the CNN-output cache of the manifest's utterances at `out`.
    Fine-tuning runs of one model share it: one that asks while another builds it waits, then reuses it."""
    df = read_manifest(manifest)
    with exclusive_output(out, wait=True):  # extract's own lock would refuse the second run instead
        summary = extract(utterance_records(df, manifest), ConvEncoderBackbone(speech), out,
                          manifest_sha256=manifest_sha256(df), max_seconds=max_seconds, show_progress=show_progress)
    return summary.cache_path
