"""What a corpus recipe is, and the layout checks every recipe shares.

A recipe is a pure `prepare_<corpus>(root, ...) -> DataFrame` that reads a corpus's published
layout and label files and returns manifest rows with absolute paths (files missing on disk are
kept here and excluded, listed and counted by `prepare_corpus`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from ser.errors import CorpusError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class CorpusRecipe:
    """A registered corpus: how to prepare it and how it is evaluated by default."""

    name: str
    prepare: Callable[..., pd.DataFrame]
    default_scheme: str | None  # session | speaker | kfold | split; None: decided from the manifest's columns
    labels: tuple[str, ...]  # every label the recipe can write (empty: taken from the data)
    help: str
    options: tuple[str, ...] = ()  # keyword options `prepare` accepts besides `root`
    default_k: int | None = None  # speaker groups per fold for large speaker sets (None: one per speaker)
    generates_audio: bool = False  # True: ROOT is an output folder, not an existing corpus


def require_folder(root: Path, relative: str, corpus: str) -> Path:
    """`root/relative` as a folder, or a CorpusError that names what is missing."""
    if not root.is_dir():
        raise CorpusError(f"{corpus}: root {root} is not a folder", "pass the folder the corpus was unpacked into")
    folder = root / relative
    if not folder.is_dir():
        raise CorpusError(
            f"{root} does not look like {corpus}: expected folder {relative}/ is missing",
            f"pass the top folder of the {corpus} download",
        )
    return folder


def require_file(root: Path, relative: str, corpus: str) -> Path:
    """`root/relative` as a file, or a CorpusError that names what is missing."""
    if not root.is_dir():
        raise CorpusError(f"{corpus}: root {root} is not a folder", "pass the folder the corpus was unpacked into")
    file = root / relative
    if not file.is_file():
        raise CorpusError(
            f"{root} does not look like {corpus}: expected file {relative} is missing",
            f"pass the top folder of the {corpus} download",
        )
    return file


def audio_files(folder: Path, pattern: str = "**/*") -> list[Path]:
    """Audio files under `folder` matching `pattern`, sorted, skipping macOS `._*` shadows."""
    return sorted(
        p for p in folder.glob(pattern)
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file() and not p.name.startswith("._")
    )  # fmt: skip


def require_audio(files: list[Path], root: Path, pattern: str, corpus: str) -> list[Path]:
    """The files, or a CorpusError saying that no file matched the corpus's naming pattern."""
    if not files:
        raise CorpusError(
            f"{root} does not look like {corpus}: no audio file matches {pattern}",
            f"pass the top folder of the {corpus} download",
        )
    return files


def decode(code: str, table: dict[str, str], corpus: str, where: str) -> str:
    """Map a corpus's label code to a label, or fail naming the code, the file and the known codes."""
    if code in table:
        return table[code]
    raise CorpusError(
        f"{corpus}: unknown label code {code!r} in {where}",
        "known codes: " + ", ".join(sorted(table)),
    )


def corpus_frame(rows: Iterable[dict], corpus: str) -> pd.DataFrame:
    """Rows → manifest DataFrame with a `corpus` column; duplicate ids are refused with examples."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        raise CorpusError(f"{corpus}: no utterance found", "check that the root holds the corpus's audio and labels")
    duplicates = df.loc[df["id"].duplicated(), "id"].unique().tolist()
    if duplicates:
        raise CorpusError(
            f"{corpus}: {len(duplicates)} duplicate utterance id(s), e.g. {', '.join(map(str, duplicates[:3]))}",
            "the root seems to hold two copies of some files; keep one copy",
        )
    df["corpus"] = df["corpus"].fillna(corpus) if "corpus" in df.columns else corpus  # a table may name its own
    return df


def number(text: str, corpus: str, where: str) -> float | None:
    """A numeric label field (empty → None), or a CorpusError naming where it is."""
    text = str(text).strip()
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise CorpusError(f"{corpus}: {text!r} in {where} is not a number") from None


def unexpected_name(corpus: str, file: Path, pattern: str, count: int) -> CorpusError:
    """The error for audio files that do not follow a corpus's naming scheme."""
    return CorpusError(
        f"{corpus}: {count} audio file(s) do not follow the naming pattern {pattern}, e.g. {file}",
        "point ROOT at an unmodified copy of the corpus (or move the extra files away)",
    )


def folder_disagrees(corpus: str, file: Path, count: int) -> CorpusError:
    """The error for files whose name's label code disagrees with the label folder they sit in."""
    return CorpusError(
        f"{corpus}: {count} audio file(s) whose label code disagrees with their folder, e.g. {file}",
        "the label would be a guess: point ROOT at an unmodified copy of the corpus (or refile those files)",
    )


def match_all(files: list[Path], regex: re.Pattern, corpus: str, pattern: str) -> list[tuple[Path, re.Match]]:
    """Match every file stem against `regex`; refuse (naming one) the files that do not match."""
    matches = [(f, regex.match(f.stem)) for f in files]
    bad = [f for f, m in matches if m is None]
    if bad:
        raise unexpected_name(corpus, bad[0], pattern, len(bad))
    return matches  # type: ignore[return-value]
