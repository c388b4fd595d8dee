"""openSMILE eGeMAPS as a one-layer cache: frame counts, dimensionality, functionals."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.features.backbones import load_backbone
from ser.features.cache import CacheReader
from ser.features.extract import extract

pytest.importorskip("opensmile", reason="needs the opensmile extra: pip install 'ser[opensmile]'")


def test_egemaps_cache_frames_dimensions_and_functionals(audio_files, tmp_path):
    seconds = [0.5, 1.23, 2.0]
    records = audio_files(seconds)
    summary = extract(records, load_backbone("egemaps"), tmp_path / "egemaps.h5")
    assert summary.extracted == 3 and not summary.skipped
    with CacheReader(summary.cache_path) as cache:
        assert (cache.num_layers, cache.dim, cache.frame_rate) == (1, 25, 100.0)
        for record, duration in zip(records, seconds):
            samples = int(round(duration * 16000))
            frames = 1 + (samples - 800) // 160  # one frame per 10 ms once the first 50 ms are in
            x = cache.read(record.id)
            assert x.shape == (1, frames, 25) and cache.lengths[record.id] == frames
            assert np.isfinite(x).all()
            assert np.allclose(cache.pooled(record.id)[0, 0], x[0].mean(axis=0), rtol=1e-3, atol=1e-2)  # fp16 frames
            functionals = cache.functionals(record.id)
            assert functionals.shape == (88,) and np.isfinite(functionals).all()
        assert len(cache.functional_names) == 88 and cache.functional_names[0].startswith("F0semitone")
        assert cache.info()["functionals"] == 88
        # a louder, higher clip has other functionals: they are per utterance, not constant
        assert not np.allclose(cache.functionals(records[0].id), cache.functionals(records[2].id))


def test_list_models_shows_the_opensmile_sets():
    result = CliRunner().invoke(app, ["list", "models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "egemaps" in result.output and "compare" in result.output and "6373 functionals" in result.output
