"""The extraction loop on tiny real models: exactness per family, layers, skips, refusals."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
import soundfile as sf

from ser.errors import AudioError, CacheError, UserInputError
from ser.features.audio import load_audio
from ser.features.backbones import load_backbone
from ser.features.cache import CacheReader, read_attrs
from ser.features.extract import extract, parse_layers
from ser.features.frontends import FbankFrontend
from ser.features.records import UtteranceRecord


def test_group_norm_cache_equals_single_forward_exactly(tiny_model_dir, audio_files, tmp_path):
    records = audio_files([0.8, 1.1, 0.5, 0.7, 0.7])  # only the equal lengths may share a batch
    backbone = load_backbone(str(tiny_model_dir("wavlm")))
    summary = extract(records, backbone, tmp_path / "w.h5", manifest_sha256="m", batch_seconds=10)
    assert summary.extracted == 5 and not summary.skipped
    with CacheReader(tmp_path / "w.h5") as cache:
        assert cache.attrs["batching"] == "single" and cache.attrs["num_layers"] == 3
        for position, record in enumerate(records):
            (alone,) = backbone.forward([load_audio(record)])
            assert cache.lengths[record.id] == backbone.num_frames(len(load_audio(record)))
            if position < 3:  # alone in its batch: bit-identical to the single forward
                np.testing.assert_array_equal(cache.read(record.id), alone.astype(np.float16).astype(np.float32))
            else:  # equal-length batch: no padding, only matmul rounding differs
                np.testing.assert_allclose(cache.read(record.id), alone, atol=2e-3, rtol=2e-3)


def test_layer_norm_batched_cache_close_to_single_forward(tiny_model_dir, audio_files, tmp_path):
    records = audio_files([0.6, 1.3, 0.9, 0.45])
    backbone = load_backbone(str(tiny_model_dir("wavlm-large")))
    extract(records, backbone, tmp_path / "l.h5", manifest_sha256="m", batch_seconds=10)
    with CacheReader(tmp_path / "l.h5") as cache:
        for record in records:
            (alone,) = backbone.forward([load_audio(record)])
            np.testing.assert_allclose(cache.read(record.id), alone, atol=1e-2, rtol=1e-2)


def test_whisper_and_hubert_frame_counts_in_cache(tiny_model_dir, audio_files, tmp_path):
    records = audio_files([1.0, 0.3])
    for family, frames in (("whisper", [50, 15]), ("hubert", [49, 14])):
        extract(records, load_backbone(str(tiny_model_dir(family))), tmp_path / f"{family}.h5", manifest_sha256="m")
        with CacheReader(tmp_path / f"{family}.h5") as cache:
            assert [cache.lengths[r.id] for r in records] == frames
            assert cache.read(records[0].id).shape == (3, frames[0], 32)


def test_layer_subset_and_cropping(audio_files, tmp_path):
    records = audio_files([2.0, 1.0])
    backbone = load_backbone("wavlm-base", random_init=True, config_overrides=dict(num_hidden_layers=3))
    summary = extract(records, backbone, tmp_path / "s.h5", layers=parse_layers("0,2-3", 4), max_seconds=1.5)
    with CacheReader(tmp_path / "s.h5") as cache:
        assert cache.attrs["layers"] == [0, 2, 3] and cache.num_layers == 3 and cache.attrs["model_num_layers"] == 4
        assert cache.attrs["max_seconds"] == 1.5 and cache.lengths[records[0].id] == backbone.num_frames(24000)
        (full,) = backbone.forward([load_audio(records[1])])
        np.testing.assert_array_equal(cache.read(records[1].id), full[[0, 2, 3]].astype(np.float16).astype(np.float32))
    assert summary.audio_seconds == pytest.approx(2.5)
    with pytest.raises(UserInputError, match="outside"):
        parse_layers("0,9", 4)


def test_bad_inputs_are_skipped_with_reasons(audio_files, tmp_path, wave_file):
    records = audio_files([0.5, 0.6])
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"garbage" * 20)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    nan = np.full(4000, np.nan, dtype=np.float32)
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    bad = [
        UtteranceRecord("missing", str(tmp_path / "nope.wav")),
        UtteranceRecord("corrupt", str(corrupt)),
        UtteranceRecord("empty", str(empty)),
        UtteranceRecord("short", str(wave_file(tmp_path / "short.wav", 0.01))),
        UtteranceRecord("nan", str(tmp_path / "nan.wav")),
    ]
    good = [
        UtteranceRecord("stereo-8k", str(wave_file(tmp_path / "st.wav", 0.7, rate=8000, channels=2))),
        UtteranceRecord("long-48k", str(wave_file(tmp_path / "l.flac", 31.0, rate=48000))),
    ]
    out = tmp_path / "fb.h5"
    summary = extract(records + bad + good, FbankFrontend(), out)
    assert set(summary.skipped) == {"missing", "corrupt", "empty", "short", "nan"}
    assert "file not found" in summary.skipped["missing"] and "NaN" in summary.skipped["nan"]
    assert "25 ms" in summary.skipped["short"]
    rows = list(csv.DictReader(open(summary.skipped_csv)))
    assert {row["id"] for row in rows} == set(summary.skipped) and all(row["reason"] for row in rows)
    with CacheReader(out) as cache:
        assert cache.ids == [r.id for r in records + good]
        assert cache.lengths["long-48k"] == 1 + (31 * 16000 - 400) // 160
        assert set(cache.skipped) == set(summary.skipped)
    with pytest.raises(AudioError, match="missing: file not found"):
        extract(records + bad, FbankFrontend(), tmp_path / "fail.h5", on_error="fail")
    with pytest.raises(CacheError, match="no utterance could be extracted"):
        extract(bad, FbankFrontend(), tmp_path / "none.h5")


def test_duplicate_ids_are_refused(audio_files, tmp_path):
    records = audio_files([0.5])
    with pytest.raises(UserInputError, match="duplicate utterance ids: utt/0"):
        extract(records + records, FbankFrontend(), tmp_path / "d.h5")


def test_existing_cache_guards(audio_files, tmp_path):
    records = audio_files([0.5, 0.7])
    out = tmp_path / "g.h5"
    extract(records, FbankFrontend(), out, manifest_sha256="one")
    again = extract(records, FbankFrontend(), out, manifest_sha256="one")
    assert again.already_complete and again.reused == 2 and again.extracted == 0
    with pytest.raises(CacheError, match="manifest changed"):
        extract(records, FbankFrontend(), out, manifest_sha256="two")
    with pytest.raises(CacheError, match="made by model 'fbank'"):
        extract(records, load_backbone("mfcc"), out, manifest_sha256="one")
    before = out.read_bytes()
    broken = records + [UtteranceRecord("gone", str(tmp_path / "gone.wav"))]
    with pytest.raises(AudioError):  # a failed --overwrite run leaves the finished cache untouched
        extract(broken, FbankFrontend(), out, manifest_sha256="two", overwrite=True, on_error="fail")
    assert out.read_bytes() == before
    with CacheReader(out) as cache:
        assert cache.attrs["manifest_sha256"] == "one"
    # the next run resumes the shards the failed run stored and replaces the cache only when done
    summary = extract(records, FbankFrontend(), out, manifest_sha256="two", overwrite=True)
    assert CacheReader(out).attrs["manifest_sha256"] == "two" and summary.extracted + summary.reused == 2


def test_overwrite_replaces_a_cache_or_a_damaged_one_but_never_another_file(audio_files, tmp_path):
    """`ser extract --out notes.txt --overwrite` replaced the user's file with a cache."""
    records = audio_files([0.5])
    notes, foreign = tmp_path / "notes.txt", tmp_path / "other.h5"
    notes.write_text("precious")
    with h5py.File(foreign, "w") as f:
        f.attrs["made_by"] = "another tool"
    for path in (notes, foreign):
        before = path.read_bytes()
        with pytest.raises(CacheError, match=f"--overwrite replaces only a feature cache, and {path} is not one"):
            extract(records, FbankFrontend(), path, overwrite=True)
        assert path.read_bytes() == before
    damaged = tmp_path / "damaged.h5"
    extract(records, FbankFrontend(), damaged)
    damaged.write_bytes(damaged.read_bytes()[:3000])  # truncated: h5py can no longer open it
    reasons = {path: str(_refusal(read_attrs, path)) for path in (notes, foreign, damaged)}
    assert reasons[notes] == f"{notes} is not an HDF5 file (point at a file written by `ser extract`)"
    assert reasons[foreign] == f"{foreign} is not a ser feature cache (point at a file written by `ser extract`)"
    assert reasons[damaged].startswith(f"{damaged} is not a readable HDF5 file")  # only a damaged cache is to redo
    assert reasons[damaged].endswith("(run `ser extract` again with --overwrite)")
    assert extract(records, FbankFrontend(), damaged, overwrite=True).extracted == 1
    with CacheReader(damaged) as cache:
        assert list(cache.fingerprints) == [records[0].id] and cache.damage(verify=True) == {}


def _refusal(function, *args) -> CacheError:
    with pytest.raises(CacheError) as caught:
        function(*args)
    return caught.value


class ScaledFbank(FbankFrontend):
    """A frontend whose values exceed float16's range for loud input."""

    def forward(self, waves, full_precision=False):
        return [states * 1e4 for states in super().forward(waves)]


def test_fp16_overflowing_utterance_is_stored_in_float32(audio_files, tmp_path):
    records = audio_files([0.5])
    extract(records, ScaledFbank(), tmp_path / "big.h5")
    with CacheReader(tmp_path / "big.h5") as cache:
        assert cache.attrs["float32_utterances"] == 1
        (expected,) = ScaledFbank().forward([load_audio(records[0])])
        np.testing.assert_array_equal(cache.read(records[0].id), expected)
