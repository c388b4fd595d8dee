"""The folder-per-label and any-table (csv) recipes, and option checks of prepare_corpus."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data.corpora import CORPORA, prepare_corpus
from ser.data.corpora.generic import parse_column_map, prepare_csv, prepare_folder
from ser.data.folds import default_scheme
from ser.data.manifest import read_manifest
from ser.errors import CorpusError, UserInputError


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(800, 0.01), 16000)


def test_folder_labels_come_from_sub_folders(tmp_path):
    write_wav(tmp_path / "happy" / "a.wav")
    write_wav(tmp_path / "happy" / "day2" / "a.wav")
    write_wav(tmp_path / "sad" / "a.wav")
    df = prepare_folder(tmp_path).set_index("id")
    assert df["label"].to_dict() == {"happy/a": "happy", "happy/day2/a": "happy", "sad/a": "sad"}
    assert default_scheme(df.reset_index()) == "kfold"  # no speakers: stratified k-fold
    write_wav(tmp_path / "loose.wav")
    with pytest.raises(CorpusError, match="naming pattern ROOT/<label>/<clip>.wav"):
        prepare_folder(tmp_path)


def test_csv_maps_columns_and_resolves_paths(tmp_path):
    write_wav(tmp_path / "clips" / "x1.wav")
    write_wav(tmp_path / "clips" / "x2.wav")
    table = tmp_path / "meta.tsv"
    table.write_text("File\tEmotion\tActor\nclips/x1.wav\tjoy\tA\nclips/x2.wav\tanger\tB\nclips/x3.wav\tjoy\tB\n")
    columns = parse_column_map("path=File,label=Emotion,speaker=Actor")
    df = prepare_csv(table, columns).set_index("id")
    assert df.loc["x1", ["label", "speaker"]].tolist() == ["joy", "A"]
    assert df.loc["x2", "path"] == str((tmp_path / "clips" / "x2.wav").resolve())
    out = tmp_path / "manifests" / "mine.csv"
    result = prepare_corpus(CORPORA.get("csv"), table, out, {"columns": columns})
    assert [e.id for e in result.excluded] == ["x3"]
    assert read_manifest(out)["path"].tolist() == ["../clips/x1.wav", "../clips/x2.wav"]
    assert default_scheme(read_manifest(out)) == "speaker"
    with pytest.raises(CorpusError, match="no column\\(s\\) Label"):
        prepare_csv(table, {"path": "File", "label": "Label"})
    with pytest.raises(UserInputError, match="not a manifest column"):
        parse_column_map("mood=Emotion")


def test_the_manifest_never_replaces_the_table_it_is_read_from(tmp_path):
    """`ser prepare csv meta.csv --out meta.csv` replaced the user's table with the manifest."""
    write_wav(tmp_path / "clips" / "x1.wav")
    table = tmp_path / "meta.csv"
    table.write_text("path,label\nclips/x1.wav,joy\n")
    with pytest.raises(UserInputError, match="is the corpus table itself"):
        prepare_corpus(CORPORA.get("csv"), table, tmp_path / "." / "meta.csv", {})
    assert table.read_text() == "path,label\nclips/x1.wav,joy\n"


def test_duplicate_ids_in_a_table_are_refused(tmp_path):
    write_wav(tmp_path / "a" / "x.wav")
    write_wav(tmp_path / "b" / "x.wav")
    (tmp_path / "t.csv").write_text("path,label\na/x.wav,joy\nb/x.wav,joy\n")
    with pytest.raises(CorpusError, match="1 duplicate utterance id\\(s\\), e.g. x"):
        prepare_csv(tmp_path / "t.csv")


def test_a_row_without_a_path_or_a_column_mapped_twice_is_one_line(tmp_path):
    """Both were a TypeError traceback (`expected str, bytes or os.PathLike object, not float`)."""
    write_wav(tmp_path / "x.wav")
    (tmp_path / "t.csv").write_text("File,Emo\nx.wav,joy\n,sad\n,sad\n")
    with pytest.raises(CorpusError, match="t.csv line 3 has no path \\(its `File` is empty\\); 2 row"):
        prepare_csv(tmp_path / "t.csv", {"path": "File", "label": "Emo"})
    with pytest.raises(UserInputError, match="--columns maps 'path' twice \\(File and Emo\\)"):
        parse_column_map("path=File,label=Emo,path=Emo")


def test_options_a_recipe_does_not_take_are_refused(tmp_path):
    with pytest.raises(UserInputError, match="--improvised-only does not apply to corpus 'emodb'"):
        prepare_corpus(CORPORA.get("emodb"), tmp_path, tmp_path / "m.csv", {"improvised_only": True})
    with pytest.raises(CorpusError, match="does not exist"):
        prepare_corpus(CORPORA.get("emodb"), tmp_path / "nowhere", tmp_path / "m.csv", {})
