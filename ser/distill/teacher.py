"""The multimodal teacher (reference §5): audio cache + text cache of the transcripts → one head.

`load_multimodal_data` adds the text cache to the audio `TrainingData` (both in memory, row-
aligned); its batches carry the text features after the targets, and the trainer passes them on
to the head: head(x, lengths, text_x, text_lengths). Training itself is the ordinary trainer
(`train_folds`), so the teacher follows the corpus protocol and never sees a fold's test data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ser.data.manifest import manifest_sha256, read_manifest
from ser.data.text_extraction import text_cache_path
from ser.data.workspace import Workspace, model_slug
from ser.errors import CacheError, TrainingError
from ser.features.cache import CacheReader
from ser.features.packed import PackedFeatures
from ser.training.config import TrainConfig
from ser.training.loading import load_training_data
from ser.training.loop import ProgressCallback
from ser.training.run import train_folds
from ser.training.training_data import TrainingData

TEACHER_HEAD = "multimodal"


@dataclass
class MultimodalTrainingData(TrainingData):
    """Audio training data plus the text features of the same utterances (row-aligned)."""

    text: PackedFeatures | None = None

    @property
    def text_layers(self) -> int:
        return self.text.num_layers

    @property
    def text_dim(self) -> int:
        return self.text.dim

    def audio_only(self) -> TrainingData:
        """The same utterances, targets and audio features without the text (shares memory)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingData)}
        return TrainingData(**fields)

    def batches(self, batch_rows: list[np.ndarray], *options) -> Iterator[tuple[torch.Tensor, ...]]:
        """(x, lengths, targets, text_x, text_lengths) on the device for each array of rows
        (`options` go to the audio batches unchanged, e.g. a feature scaler)."""
        for rows, (x, lengths, targets) in zip(batch_rows, super().batches(batch_rows, *options)):
            index = torch.from_numpy(rows).to(self.text.offsets.device)
            text_x, text_lengths = self.text.batch(index)  # (B, Lt, Tt, Dt), (B,)
            yield x, lengths, targets, text_x.to(self.device), text_lengths.to(self.device)


def load_multimodal_data(
    manifest: Path, audio_cache: Path, text_cache: Path, task: str, layers: list[int] | None = None,
    device: str = "auto", unlabelled: bool = False,
) -> MultimodalTrainingData:
    """The audio training data of `load_training_data` plus the text cache, both in memory
    (`unlabelled`: keep the rows without targets too, for the teacher to label)."""
    if not Path(text_cache).is_file():
        raise CacheError(f"no text cache at {text_cache}", "run `ser extract --text --model M` first")
    audio = load_training_data(manifest, audio_cache, task, layers, device, stream=False, unlabelled=unlabelled)
    with CacheReader(text_cache) as reader:
        if reader.attrs.get("modality") != "text":
            raise CacheError(f"{text_cache} is not a text cache", "make one with `ser extract --text --model M`")
        if reader.attrs.get("manifest_sha256") != manifest_sha256(read_manifest(manifest)):
            raise CacheError(
                f"the text cache {text_cache} was extracted from a different manifest than {manifest}",
                "re-run `ser extract --text` for this manifest",
            )
        missing = [utt for utt in audio.ids if utt not in reader.lengths]
        if missing:
            raise CacheError(f"{len(missing)} utterances have no text features, e.g. {missing[0]}")
        text = reader.load_all(ids=audio.ids, device=audio.packed.frames.device)
    if text.ids != audio.ids:
        raise CacheError("the text cache returned utterances in another order than asked")
    fields = {f.name: getattr(audio, f.name) for f in dataclasses.fields(TrainingData)}
    return MultimodalTrainingData(**fields, text=text)


def teacher_config(config: TrainConfig, data: MultimodalTrainingData, text_model: str) -> TrainConfig:
    """`config` as a teacher run: the multimodal head sized to the text cache, the text model noted."""
    if config.head != TEACHER_HEAD:
        raise TrainingError(f"the teacher is the {TEACHER_HEAD!r} head, not {config.head!r}",
                            f"drop --head or pass --head {TEACHER_HEAD} with --teacher")
    head_kwargs = {**config.head_kwargs, "text_dim": data.text_dim, "text_layers": data.text_layers}
    return dataclasses.replace(config, head_kwargs=head_kwargs, text_model=text_model)


def run_teacher_training(
    workdir: Path,
    config: TrainConfig,
    text_model: str,
    which: str = "all",
    manifest: Path | None = None,
    model: str | None = None,
    out: Path | None = None,
    run_name: str | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> tuple[Path, dict[str, dict]]:
    """`ser train --teacher --text-model M`: train the multimodal head on audio + text caches."""
    workspace = Workspace(Path(workdir))
    inputs = workspace.training_inputs(manifest, model)
    text_cache = text_cache_path(workspace, inputs.corpus, text_model)
    data = load_multimodal_data(inputs.manifest, inputs.cache, text_cache, config.task, config.layers, device)
    base = dataclasses.replace(config, model=inputs.model, corpus=inputs.corpus)
    run_name = run_name or f"teacher-{model_slug(text_model)}-{base.run_name()}"
    config = teacher_config(base, data, text_model)
    run_dir = Path(out) if out is not None else workspace.runs_root(inputs.corpus, inputs.model) / run_name
    return run_dir, train_folds(config, data, run_dir, which, progress)
