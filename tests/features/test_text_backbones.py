"""Text encoders: tiny random BERT/RoBERTa saved to disk, loaded offline, written to the cache."""

import numpy as np
import pytest

from ser.errors import ModelLoadError, UnknownNameError
from ser.features.cache import CacheReader
from ser.features.records import UtteranceRecord
from ser.features.text_backbones import load_text_backbone, save_tiny_text_model
from ser.features.text_extract import extract_text

TEXTS = ["what a lovely sunny day", "this is awful and i am tired", "the meeting is on the table", ""]


@pytest.fixture(scope="module", params=["bert", "roberta"])
def tiny_dir(request, tmp_path_factory):
    return save_tiny_text_model(tmp_path_factory.mktemp(request.param), TEXTS, family=request.param, hidden_size=16)


def test_every_layer_per_token_without_padding(tiny_dir):
    backbone = load_text_backbone(str(tiny_dir))
    assert (backbone.num_layers, backbone.dim, backbone.modality) == (3, 16, "text")
    states = backbone.forward(TEXTS)
    words = [len(text.split()) for text in TEXTS]
    assert [s.shape for s in states] == [(3, n + 2, 16) for n in words]  # + [CLS] and [SEP]
    alone = backbone.forward([TEXTS[0]])[0]
    np.testing.assert_allclose(alone, states[0], atol=1e-5)  # padding in a batch changes nothing
    assert not np.allclose(states[0][0, 1], states[1][0, 1])  # different words, different embeddings


def test_text_cache_has_the_audio_cache_contract(tiny_dir, tmp_path):
    backbone = load_text_backbone(str(tiny_dir))
    records = [UtteranceRecord(f"u{i}", f"/x/u{i}.wav", text=text) for i, text in enumerate(TEXTS)]
    out = tmp_path / "text.h5"
    result = extract_text(records, backbone, out, manifest_sha256="abc", batch_size=3)
    assert result.utterances == 4
    with CacheReader(out) as reader:
        assert reader.attrs["modality"] == "text" and reader.attrs["manifest_sha256"] == "abc"
        assert reader.num_layers == 3 and reader.dim == 16 and reader.ids == [r.id for r in records]
        np.testing.assert_allclose(reader.read("u1"), backbone.forward([TEXTS[1]])[0], atol=2e-3)  # fp16
        assert reader.load_all().lengths.tolist() == [7, 9, 8, 2]
    assert extract_text(records, backbone, out, manifest_sha256="abc").utterances == 0  # complete: reused


def test_missing_model_fails_fast_with_the_download_hint(tmp_path):
    with pytest.raises(ModelLoadError, match="hf download"):
        load_text_backbone("bert-base")  # offline and not in the local hub cache
    with pytest.raises(UnknownNameError, match="bert-base"):
        load_text_backbone("bert-bsae")
