"""Manifests: the CSV table of utterances that every later stage reads.

Columns: `id, path` required; optional `start, end, label, speaker, session, gender, split, text,
arousal, valence, dominance, duration, corpus` (extra columns are kept). Paths are stored relative
to the manifest's folder. Missing values are empty cells on disk and NaN in memory.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ser.data.atomic_files import write_via_temporary
from ser.errors import ManifestError
from ser.features.records import UtteranceRecord

REQUIRED_COLUMNS = ("id", "path")
TEXT_COLUMNS = ("id", "path", "label", "speaker", "session", "gender", "split", "text", "corpus")
NUMBER_COLUMNS = ("start", "end", "arousal", "valence", "dominance", "duration")
COLUMN_ORDER = (
    "id", "path", "start", "end", "label", "speaker", "session", "gender", "split",
    "arousal", "valence", "dominance", "duration", "corpus", "text",
)  # fmt: skip
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
NUL = re.compile("\x00")


def _line(row_position: int) -> str:
    """How a user finds a row: CSV line numbers count the header as line 1."""
    return f"row {row_position + 1} (line {row_position + 2})"


def _clean_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def validate_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Check and normalise a manifest table; returns a copy in canonical column order.

    Raises ManifestError naming the first bad row: missing columns, empty or duplicate ids, ids
    with control characters (HDF5 cannot store a NUL), empty paths or paths with a NUL,
    non-numeric times or targets, start >= end.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{source} lacks the required column(s) {', '.join(missing)}",
            "a manifest needs at least `id` and `path` columns",
        )
    df = df.reset_index(drop=True).copy()
    for column in TEXT_COLUMNS:
        if column in df.columns:
            df[column] = pd.Series([_clean_text(v) for v in df[column]], dtype="str")
    for column in ("id", "path"):
        empty = np.flatnonzero(df[column].isna().to_numpy())
        if len(empty):
            raise ManifestError(f"{source}: {_line(int(empty[0]))} has an empty `{column}`")
    for column, pattern in (("id", CONTROL_CHARACTERS), ("path", NUL)):
        rows = np.flatnonzero(df[column].str.contains(pattern).to_numpy(dtype=bool))
        if len(rows):
            bad = int(rows[0])
            value = df[column].iloc[bad]
            raise ManifestError(
                f"{source}: {_line(bad)} has the control character {pattern.search(value).group()!r} in its "
                f"`{column}` {value!r}", "ids and paths name files and HDF5 datasets: use printable characters",
            )
    duplicated = df["id"].duplicated(keep=False).to_numpy()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        count = int(df.loc[duplicated, "id"].nunique())
        raise ManifestError(
            f"{source}: duplicate id {df['id'].iloc[first]!r} ({_line(first)}); {count} id(s) repeat",
            "utterance ids must be unique",
        )
    for column in NUMBER_COLUMNS:
        if column in df.columns:
            numbers = pd.to_numeric(df[column], errors="coerce")
            bad = np.flatnonzero((numbers.isna() & df[column].notna() & (df[column].astype(str) != "")).to_numpy())
            if len(bad):
                value = df[column].iloc[int(bad[0])]
                raise ManifestError(f"{source}: {_line(int(bad[0]))} has a non-numeric `{column}` {value!r}")
            df[column] = numbers.astype("float64")
    if "start" in df.columns and "end" in df.columns:
        reversed_rows = np.flatnonzero((df["start"] >= df["end"]).to_numpy())
        if len(reversed_rows):
            raise ManifestError(f"{source}: {_line(int(reversed_rows[0]))} has start >= end")
    if "start" in df.columns:
        negative = np.flatnonzero((df["start"] < 0).to_numpy())
        if len(negative):
            raise ManifestError(f"{source}: {_line(int(negative[0]))} has a negative start")
    ordered = [c for c in COLUMN_ORDER if c in df.columns]
    return df[ordered + [c for c in df.columns if c not in ordered]]


def not_a_manifest(path: Path, hint: str, what: str = "manifest") -> ManifestError:
    """The error for a manifest path that is no file: a folder (naming a manifest in it) or nothing."""
    if path.is_dir():
        inside = sorted(path.glob("*.csv"))
        return ManifestError(f"{path} is a folder, not a {what} file",
                             f"pass one of its manifests, e.g. {inside[0]}" if inside else
                             "pass the CSV that `ser prepare` wrote (manifests/<corpus>.csv)")
    return ManifestError(f"{what} {path} does not exist", hint)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest CSV (`id` and other text columns as str, empty cells NaN)."""
    path = Path(path)
    if not path.is_file():
        raise not_a_manifest(path, "run `ser prepare CORPUS ROOT` first")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ManifestError(f"manifest {path} is not a readable CSV: {error}") from error
    return validate_manifest(df, source=str(path))


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate and write `df` atomically; absolute paths are stored relative to the manifest's folder."""
    path = Path(path)
    df = validate_manifest(df, source="manifest to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    df["path"] = [_relative(p, folder) for p in df["path"]]
    write_via_temporary(path, lambda temporary: df.to_csv(temporary, index=False, encoding="utf-8"))
    return path


def _relative(file: str, folder: Path) -> str:
    if not os.path.isabs(file):
        return file
    try:
        return Path(os.path.relpath(file, folder)).as_posix()
    except ValueError:  # another drive on Windows
        return file


def absolute_path(path: str | Path) -> str:
    """`path` resolved; a symlink loop (which `resolve` refuses) is kept as its absolute path, so
    the file is reported as unreadable later like any other bad audio, instead of aborting."""
    try:
        return str(Path(path).resolve())
    except (RuntimeError, OSError):
        return os.path.abspath(path)


def resolve_path(file: str, manifest_path: str | Path) -> str:
    """The absolute path of a manifest `path` entry (relative entries are relative to the manifest)."""
    if os.path.isabs(file):
        return file
    return absolute_path(Path(manifest_path).resolve().parent / file)


def _time_text(value: object) -> str:
    return "" if value is None or pd.isna(value) else repr(float(value))


def manifest_sha256(df: pd.DataFrame) -> str:
    """Hash of the rows that matter for extraction — (id, path, start, end) — independent of row order."""
    starts = df["start"] if "start" in df.columns else [None] * len(df)
    ends = df["end"] if "end" in df.columns else [None] * len(df)
    lines = sorted(
        "\t".join((str(i), str(p), _time_text(s), _time_text(e)))
        for i, p, s, e in zip(df["id"], df["path"], starts, ends)
    )
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def utterance_records(df: pd.DataFrame, manifest_path: str | Path) -> list[UtteranceRecord]:
    """The rows as extraction records, in table order, with absolute paths."""
    columns = {c: df[c] if c in df.columns else [None] * len(df) for c in ("start", "end", "text")}
    records = []
    for utt_id, file, start, end, text in zip(df["id"], df["path"], columns["start"], columns["end"], columns["text"]):
        records.append(
            UtteranceRecord(
                id=str(utt_id),
                path=resolve_path(str(file), manifest_path),
                start=None if start is None or pd.isna(start) else float(start),
                end=None if end is None or pd.isna(end) else float(end),
                text=None if text is None or pd.isna(text) or str(text) == "" else str(text),
            )
        )
    return records
