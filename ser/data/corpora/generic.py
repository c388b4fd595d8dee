"""Corpora without a published layout: a folder per label, or any table mapped onto the manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ser.data.corpora.recipe import CorpusRecipe, audio_files, corpus_frame, require_audio, unexpected_name
from ser.data.manifest import COLUMN_ORDER, absolute_path
from ser.errors import CorpusError, UserInputError


def prepare_folder(root: Path) -> pd.DataFrame:
    """ROOT/<label>/…/<clip>.wav: the sub-folder name is the label; ids are `<label>/<relative stem>`."""
    root = Path(root)
    pattern = "ROOT/<label>/<clip>.wav"
    if not root.is_dir():
        raise CorpusError(f"folder: root {root} is not a folder", "pass a folder with one sub-folder per label")
    files = require_audio(audio_files(root), root, pattern, "a label-folder corpus")
    loose = [f for f in files if f.parent == root]
    if loose:
        raise unexpected_name("folder", loose[0], pattern, len(loose))
    rows = []
    for file in files:
        relative = file.relative_to(root).with_suffix("")
        rows.append({"id": relative.as_posix(), "path": str(file), "label": relative.parts[0]})
    return corpus_frame(rows, "folder")


def parse_column_map(text: str | None) -> dict[str, str]:
    """`"path=File,label=Emotion"` → {"path": "File", "label": "Emotion"} (manifest column = table column)."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        if "=" not in item:
            raise UserInputError(
                f"--columns item {item!r} is not MANIFEST_COLUMN=TABLE_COLUMN", "e.g. path=File,label=Emotion"
            )
        target, source = (part.strip() for part in item.split("=", 1))
        if target not in COLUMN_ORDER:
            raise UserInputError(
                f"--columns: {target!r} is not a manifest column", "choose from: " + ", ".join(COLUMN_ORDER)
            )
        if target in mapping:
            raise UserInputError(f"--columns maps {target!r} twice ({mapping[target]} and {source})",
                                 f"give {target}=<column> once")
        mapping[target] = source
    return mapping


def read_table(table_file: Path, separator: str) -> pd.DataFrame:
    """The table as strings; an empty, malformed or non-UTF-8 file is one CorpusError."""
    try:
        table = pd.read_csv(table_file, dtype=str, keep_default_na=False, na_values=[""], sep=separator)
    except UnicodeDecodeError as error:
        raise CorpusError(f"csv: {table_file} is not UTF-8 text (byte {error.start}: {error.reason})",
                          "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    except pd.errors.EmptyDataError:
        raise CorpusError(f"csv: {table_file} is empty", "pass a table with a header row and one row per clip") from None
    except pd.errors.ParserError as error:
        detail = str(error).strip().splitlines()[-1]
        raise CorpusError(f"csv: {table_file} is not a well-formed table ({detail})",
                          "check its separator and quoting (.tsv/.tab files are read tab-separated)") from None
    if table.empty:
        raise CorpusError(f"csv: {table_file} has a header but no rows", "add one row per clip")
    return table


def prepare_csv(root: Path, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Any CSV/TSV table (ROOT is the file): `columns` maps manifest columns to table columns.

    Unmapped manifest columns are taken from table columns of the same name; `path` is required
    (relative paths are relative to the table's folder); `id` defaults to the file name stem.
    """
    table_file = Path(root)
    if not table_file.is_file():
        raise CorpusError(f"csv: {table_file} is not a file", "pass the CSV/TSV table itself as ROOT")
    separator = "\t" if table_file.suffix.lower() in (".tsv", ".tab") else ","
    table = read_table(table_file, separator)
    mapping = {c: c for c in COLUMN_ORDER if c in table.columns} | dict(columns or {})
    absent = sorted(source for source in mapping.values() if source not in table.columns)
    if absent:
        raise CorpusError(
            f"csv: {table_file.name} has no column(s) {', '.join(absent)}",
            "its columns are: " + ", ".join(map(str, table.columns)),
        )
    if "path" not in mapping:
        raise CorpusError(f"csv: no `path` column in {table_file.name}", "map one with --columns path=<column>")
    df = pd.DataFrame({target: table[source] for target, source in mapping.items()})
    empty = df.index[df["path"].isna()]
    if len(empty):
        raise CorpusError(f"csv: {table_file.name} line {empty[0] + 2} has no path (its `{mapping['path']}` is empty); "
                          f"{len(empty)} row(s) have none", "fill in each row's audio path, or remove the rows without one")
    folder = table_file.resolve().parent
    df["path"] = [absolute_path(folder / p) for p in df["path"]]
    if "id" not in df.columns:
        df.insert(0, "id", [Path(p).stem for p in df["path"]])
    return corpus_frame(df.to_dict("records"), "csv")


FOLDER = CorpusRecipe(
    "folder", prepare_folder, None, (),
    "Any corpus laid out as ROOT/<label>/<clip>.wav (labels from folder names); stratified k-fold",
)  # fmt: skip
CSV = CorpusRecipe(
    "csv", prepare_csv, None, (),
    "Any table (ROOT = CSV/TSV file) mapped onto the manifest with --columns path=File,label=Emotion,…",
    options=("columns",),
)  # fmt: skip
