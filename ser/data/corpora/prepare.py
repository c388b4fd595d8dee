"""Run a recipe, exclude (and list) unusable audio files, validate, write the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ser.data.corpora.recipe import CorpusRecipe
from ser.data.manifest import validate_manifest, write_manifest
from ser.errors import AudioError, CorpusError, UserInputError
from ser.features.audio import audio_file_info


@dataclass(frozen=True)
class ExcludedFile:
    id: str
    path: str
    reason: str  # one line: "file not found: …", "… is empty (0 bytes)", "… is truncated: …", …


@dataclass(frozen=True)
class PreparedCorpus:
    manifest: Path
    table: pd.DataFrame  # the rows written, with absolute paths
    excluded: list[ExcludedFile]  # label-table rows left out, also listed in `excluded_list`
    excluded_list: Path | None


def audio_duration(path: str) -> tuple[float | None, str | None]:
    """(seconds, None) for a usable file, else (None, why it cannot be used): the reasons of
    `ser extract` and `ser predict` (features.audio.audio_file_info)."""
    try:
        info = audio_file_info(path, "")
    except AudioError as error:
        return None, error.reason
    if info.frames <= 0 or info.samplerate <= 0:
        return None, f"{path} is empty (0 samples)"
    return info.frames / info.samplerate, None


def check_audio(df: pd.DataFrame) -> tuple[pd.DataFrame, list[ExcludedFile]]:
    """Split rows into usable ones (with a `duration` column) and excluded files with reasons."""
    durations, excluded, keep = [], [], []
    for utt_id, path in zip(df["id"], df["path"]):
        seconds, problem = audio_duration(str(path))
        keep.append(problem is None)
        durations.append(seconds)
        if problem:
            excluded.append(ExcludedFile(str(utt_id), str(path), problem))
    df = df.assign(duration=durations)
    if "end" in df.columns:  # a segment lasts end - start, not the whole file
        segment = df["end"] - df["start"].fillna(0.0) if "start" in df.columns else df["end"]
        df["duration"] = segment.where(df["end"].notna(), df["duration"])
    return df[keep].reset_index(drop=True), excluded


def recipe_options(recipe: CorpusRecipe, options: dict[str, object]) -> dict[str, object]:
    """The options that were set (not None/False), refusing those the recipe does not take."""
    given = {name: value for name, value in options.items() if value is not None and value is not False}
    for name in given:
        if name not in recipe.options:
            accepted = ", ".join("--" + o.replace("_", "-") for o in recipe.options) or "none"
            raise UserInputError(
                f"--{name.replace('_', '-')} does not apply to corpus {recipe.name!r}",
                f"options it accepts: {accepted}",
            )
    return given


def prepare_corpus(recipe: CorpusRecipe, root: Path, out: Path, options: dict[str, object],
                   name: str | None = None) -> PreparedCorpus:
    """Prepare `recipe` from `root` into the manifest `out` (excluded files go to `<out>.missing.txt`).

    `root` is resolved against the current directory first, so the files the recipe finds are the
    files the manifest (whose paths are relative to its own folder) points to. `name` replaces the
    recipe's name in the `corpus` column (e.g. a folder or csv corpus named after its data)."""
    root = Path(root).resolve()
    if not recipe.generates_audio and not root.exists():
        raise CorpusError(f"{recipe.name}: {root} does not exist", "pass the folder the corpus was unpacked into")
    if Path(out).resolve() == root:
        raise UserInputError(f"--out {out} is the corpus table itself: the manifest would replace it",
                             "choose another --out (by default <workdir>/manifests/<name>.csv)")
    df = recipe.prepare(root, **recipe_options(recipe, options))
    if name is not None and "corpus" in df.columns:
        df["corpus"] = df["corpus"].where(df["corpus"] != recipe.name, name)
    table, excluded = check_audio(validate_manifest(df, source=f"{recipe.name} recipe"))
    if table.empty:
        raise CorpusError(
            f"{recipe.name}: none of the {len(df)} labelled files under {root} can be read",
            f"e.g. {excluded[0].path}: {excluded[0].reason}" if excluded else None,
        )
    manifest = write_manifest(table, out)
    excluded_list = manifest.with_suffix(".missing.txt")
    if excluded:
        lines = ["id\tpath\treason"] + [f"{e.id}\t{e.path}\t{e.reason}" for e in excluded]
        excluded_list.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        excluded_list.unlink(missing_ok=True)  # a stale list from an earlier run
    return PreparedCorpus(manifest, table, excluded, excluded_list if excluded else None)
