"""Defaults that follow the features: a weight-free frontend cache (fbank) is standardised and
trains without SpecAugment, and cnn/shiftcnn get an input projection, unless the run says
otherwise; an SSL cache (a tiny random wav2vec2,
saved with save_pretrained) keeps the heads' reference recipes. config.json records what was done."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from ser.data.corpora import CORPORA
from ser.data.extraction import extract_corpus
from ser.data.manifest import write_manifest
from ser.data.workspace import Workspace
from ser.training import run_dir as files
from ser.training.config import TrainConfig
from ser.training.feature_defaults import is_frontend_cache
from ser.training.loading import load_training_data
from ser.training.loop import start_fold, train_fold
from ser.training.protocol import protocol_folds

TINY_WAV2VEC2 = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict:
    """The synthetic corpus (4 speakers, 2 sessions) with its fbank and tiny-wav2vec2 training data."""
    from transformers import AutoModel, Wav2Vec2Config

    workdir = tmp_path_factory.mktemp("features")
    write_manifest(CORPORA.get("synthetic").prepare(workdir / "audio", speakers=4, sessions=2, per_class=2),
                   workdir / "manifests" / "synthetic.csv")
    torch.manual_seed(1)
    tiny = workdir / "models" / "tiny-wav2vec2"
    AutoModel.from_config(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(tiny)
    workspace = Workspace(workdir)
    found = {}
    for name, model in (("fbank", "fbank"), ("ssl", str(tiny))):
        cache = extract_corpus(workdir, model).cache_path
        found[name] = load_training_data(workspace.manifest_for("synthetic"), cache, device="cpu")
    return found


def _started(data, tmp_path: Path, head: str = "shiftcnn", head_kwargs: dict | None = None, **options) -> dict:
    """config.json of a fold started (not trained) with these options."""
    config = TrainConfig.create(head, head_kwargs, epochs=1, batch_size=8, **options)
    with ExitStack() as held:
        start_fold(config, data, protocol_folds(config, data)[0], tmp_path, held)
    return files.read_json(tmp_path / files.CONFIG)


def test_the_cache_says_whether_it_holds_a_frontend(caches):
    assert is_frontend_cache(caches["fbank"].cache_path)
    assert not is_frontend_cache(caches["ssl"].cache_path)


def test_frontend_caches_are_standardised_without_spec_augment_by_default(caches, tmp_path):
    config = TrainConfig.create("shiftcnn", epochs=1, batch_size=8)
    assert config.standardize == "auto" and "spec_augment" not in config.head_kwargs
    data = caches["fbank"]
    train_fold(config, data, protocol_folds(config, data)[0], tmp_path)
    saved = files.read_json(tmp_path / files.CONFIG)
    assert saved["standardize"] is True and saved["spec_augment"] is False and saved["input_projection"] is True
    assert saved["head_resolved"]["spec_augment"] is False and saved["head_resolved"]["input_projection"] is True
    weights = torch.load(tmp_path / files.MODEL, weights_only=True)["state_dict"]
    assert weights["input_projection.weight"].shape == (data.dim, data.dim)
    assert torch.load(tmp_path / files.MODEL, weights_only=True)["feature_scaler"] is not None


@pytest.mark.parametrize("head", ["shiftformer", "lstm", "timnet"])
def test_heads_that_see_unnormalised_frames_keep_their_reference_graph(caches, tmp_path, head):
    saved = _started(caches["fbank"], tmp_path, head=head, head_kwargs={"num_blocks": 2} if head == "timnet" else None)
    assert saved["input_projection"] is False  # their first layer sees the frames themselves


def test_ssl_caches_keep_the_reference_recipes(caches, tmp_path):
    saved = _started(caches["ssl"], tmp_path / "shiftcnn")
    assert saved["standardize"] is False and saved["spec_augment"] is True  # the ShiftCNN reference's SpecAugment
    assert saved["input_projection"] is False and saved["head_resolved"]["input_projection"] is False
    saved = _started(caches["ssl"], tmp_path / "linear", head="linear")
    assert saved["standardize"] is False and saved["spec_augment"] is False  # s3prl's probe has none


def test_the_run_s_own_settings_win(caches, tmp_path):
    saved = _started(caches["fbank"], tmp_path / "a", head_kwargs={"spec_augment": True, "input_projection": False},
                     standardize=False)
    assert saved["standardize"] is False and saved["spec_augment"] is True and saved["input_projection"] is False
    saved = _started(caches["ssl"], tmp_path / "b", head_kwargs={"spec_augment": False}, standardize=True)
    assert saved["standardize"] is True and saved["spec_augment"] is False
