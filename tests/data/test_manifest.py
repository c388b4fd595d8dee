"""Manifest read/write/validate, the extraction hash and utterance records."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser.data.manifest import manifest_sha256, read_manifest, utterance_records, write_manifest
from ser.errors import ManifestError


def table(tmp_path: Path) -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["007", "b", "c"],
        "path": [str(tmp_path / "audio" / "a.wav"), str(tmp_path / "audio" / "b.wav"), "../audio/c.wav"],
        "start": [None, 0.5, None],
        "end": [None, 1.25, None],
        "label": ["happy", None, "sad"],
        "speaker": ["01", "02", "01"],
        "arousal": [3.5, 2.0, None],
        "text": ["hello there", None, "bye"],
    })  # fmt: skip


def test_round_trip_keeps_ids_as_text_and_paths_relative(tmp_path):
    path = write_manifest(table(tmp_path), tmp_path / "manifests" / "demo.csv")
    raw = path.read_text().splitlines()
    assert raw[0].startswith("id,path,start,end,label,speaker")
    assert raw[1].startswith("007,../audio/a.wav,")
    df = read_manifest(path)
    assert df["id"].tolist() == ["007", "b", "c"]
    assert df["speaker"].tolist() == ["01", "02", "01"]
    assert df["label"].isna().tolist() == [False, True, False]
    assert np.isnan(df["arousal"].iloc[2]) and df["arousal"].iloc[0] == 3.5
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves nothing behind


def test_utterance_records_resolve_paths_and_segments(tmp_path):
    path = write_manifest(table(tmp_path), tmp_path / "manifests" / "demo.csv")
    records = utterance_records(read_manifest(path), path)
    assert [r.id for r in records] == ["007", "b", "c"]
    assert records[0].path == str((tmp_path / "audio" / "a.wav").resolve())
    assert records[2].path == str((tmp_path / "audio" / "c.wav").resolve())
    assert (records[0].start, records[0].end) == (None, None)
    assert (records[1].start, records[1].end) == (0.5, 1.25)
    assert records[0].text == "hello there" and records[1].text is None


def test_hash_ignores_order_and_labels_but_not_segments(tmp_path):
    path = write_manifest(table(tmp_path), tmp_path / "m.csv")
    df = read_manifest(path)
    reference = manifest_sha256(df)
    assert manifest_sha256(df.iloc[::-1]) == reference
    assert manifest_sha256(df.assign(label="angry")) == reference
    assert manifest_sha256(read_manifest(write_manifest(df, path))) == reference
    moved = df.copy()
    moved.loc[1, "start"] = 0.75
    assert manifest_sha256(moved) != reference
    assert manifest_sha256(df.iloc[:2]) != reference


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.assign(id=["a", "b", "a"]), "duplicate id 'a' (row 1"),
        (lambda df: df.drop(columns="path"), "required column(s) path"),
        (lambda df: df.assign(start=["x", None, None]), "row 1 (line 2) has a non-numeric `start`"),
        (lambda df: df.assign(end=[None, 0.25, None]), "row 2 (line 3) has start >= end"),
        (lambda df: df.assign(id=["a", "", "c"]), "row 2 (line 3) has an empty `id`"),
        (lambda df: df.assign(id=["a", "b\x00", "c"]), "row 2 (line 3) has the control character '\\x00' in its `id`"),
        (lambda df: df.assign(id=["a", "b", "c\nd"]), "row 3 (line 4) has the control character '\\n' in its `id`"),
        (lambda df: df.assign(path=["a.wav", "b\x00.wav", "c.wav"]), "'\\x00' in its `path`"),
    ],
)
def test_bad_manifests_are_refused_naming_the_row(tmp_path, change, message):
    with pytest.raises(ManifestError) as error:
        write_manifest(change(table(tmp_path)), tmp_path / "m.csv")
    assert message in error.value.message
    assert not (tmp_path / "m.csv").exists()


def test_read_refuses_duplicate_ids_on_disk(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("id,path\n1,a.wav\n2,b.wav\n1,c.wav\n")
    with pytest.raises(ManifestError, match="duplicate id '1'"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")


def test_a_folder_given_as_the_manifest_is_named_a_folder(tmp_path):
    """`ser folds --manifest manifests` said "manifest manifests does not exist"."""
    from ser.data.workspace import Workspace

    write_manifest(table(tmp_path), tmp_path / "manifests" / "mine.csv")
    for read in (read_manifest, Workspace(tmp_path).find_manifest):
        with pytest.raises(ManifestError, match="manifests is a folder, not a manifest file") as refused:
            read(tmp_path / "manifests")
        assert refused.value.hint == f"pass one of its manifests, e.g. {tmp_path / 'manifests' / 'mine.csv'}"


def test_a_manifest_without_its_own_cache_gets_the_extract_command_for_it(tmp_path):
    """`ser train --manifest manifests/subset.csv` (a subset of a prepared corpus) hinted `ser
    extract --model M`, which extracts the workspace's other manifest, or refuses to choose."""
    from ser.data.workspace import Workspace
    from ser.errors import UserInputError

    subset = tmp_path / "manifests" / "subset.csv"
    write_manifest(table(tmp_path), subset)
    write_manifest(table(tmp_path), tmp_path / "manifests" / "full.csv")
    for model in (None, "fbank"):
        with pytest.raises(UserInputError) as refused:
            Workspace(tmp_path).training_inputs(subset, model)
        assert refused.value.hint == (f"run `ser extract --model {model or 'M'} --manifest {subset}` first (a corpus "
                                      f"is named by its manifest's file name: {subset} is 'subset')")
