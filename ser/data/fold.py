"""One fold: its dataclass, the rows folds are made from, the dev share drawn from a training
part, and the checks every fold passes. Both the protocols (folds.py) and EmoBox's published folds
(emobox.py) build their folds from these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from ser.data.held_out import held_out_rows
from ser.data.held_out_speakers import held_out_speakers
from ser.errors import FoldError, UserInputError


@dataclass(frozen=True)
class Fold:
    name: str
    train: list[str]
    dev: list[str]
    test: list[str]
    dev_split: str = ""  # how dev was drawn: "speaker", "random", "random (why not speakers)", "given: …"


def usable_rows(df: pd.DataFrame, label_column: str | None = "label") -> pd.DataFrame:
    """The rows folds are made from: those with a non-empty label (all rows when label_column is None)."""
    if label_column is None:
        return df.reset_index(drop=True)
    if label_column not in df.columns:
        raise FoldError(
            f"the manifest has no {label_column!r} column",
            "for dimensional targets build folds with label_column=None",
        )
    labels = df[label_column]
    return df[labels.notna() & (labels.astype(str).str.strip() != "")].reset_index(drop=True)


def require_column(df: pd.DataFrame, column: str, scheme: str) -> np.ndarray:
    if column not in df.columns or df[column].isna().any():
        raise FoldError(
            f"--folds {scheme} needs a {column!r} value on every row",
            "choose another --folds scheme, or add the column to the manifest",
        )
    return df[column].astype(str).to_numpy()


DEV_MODES = ("auto", "random", "speaker")
MIN_DEV_SPEAKERS = 4  # `--dev auto` holds out whole speakers when the training part has at least this many


class DevSplit(NamedTuple):
    train: list[str]
    dev: list[str]
    mode: str  # what was done: "speaker", "random", or "random (<why not speakers>)" under `auto`


def dev_split(
    train: pd.DataFrame, dev: str, seed: int, fraction: float, label_column: str | None, fold: str,
    speakers_in_test: bool = False,
) -> DevSplit:
    """Hold out `fraction` of a training part as dev: stratified rows (`random`), whole speakers
    (`speaker`, held_out_speakers.py), or `auto`: whole speakers where the part holds at least
    MIN_DEV_SPEAKERS of them and some set of them covers every class, stratified rows otherwise
    (`mode` then says why). `speakers_in_test` (kfold: test shares the training speakers) makes
    `auto` draw rows, as the test part does."""
    if dev not in DEV_MODES:
        raise UserInputError(f"unknown --dev {dev!r}", "choose " + ", ".join(DEV_MODES))
    ids = train["id"].to_numpy()
    labels = train[label_column].astype(str).to_numpy() if label_column else None
    if dev == "auto":
        why = _why_not_speakers(train, speakers_in_test)
        if why is None:
            drawn = held_out_speakers(train["speaker"].to_numpy(), labels, fraction, seed)
            if drawn.covers:
                return DevSplit(ids[~drawn.held].tolist(), ids[drawn.held].tolist(), "speaker")
            why = "no set of whole speakers covers every class"
        keep, held = _random_rows(ids, labels, fraction, seed, fold)
        return DevSplit(keep, held, f"random ({why})")
    if dev == "speaker":
        speakers = require_column(train, "speaker", "--dev speaker")
        if len(set(speakers)) < 2:
            raise FoldError(f"fold {fold}: --dev speaker needs at least 2 training speakers", "use --dev random")
        drawn = held_out_speakers(speakers, labels, fraction, seed)
        mode = "speaker" if drawn.covers else "speaker (not every class is in both dev and train)"
        return DevSplit(ids[~drawn.held].tolist(), ids[drawn.held].tolist(), mode)
    return DevSplit(*_random_rows(ids, labels, fraction, seed, fold), "random")


def _why_not_speakers(train: pd.DataFrame, speakers_in_test: bool) -> str | None:
    """Why `--dev auto` draws rows for this training part, or None (it holds out whole speakers)."""
    if speakers_in_test:
        return "kfold: test shares the training speakers"
    if "speaker" not in train.columns or train["speaker"].isna().any():
        return "no speaker on every training utterance"
    count = train["speaker"].astype(str).nunique()
    return None if count >= MIN_DEV_SPEAKERS else f"{count} training speaker{'s' * (count != 1)} < {MIN_DEV_SPEAKERS}"


def _random_rows(ids: np.ndarray, labels: np.ndarray | None, fraction: float, seed: int,
                 fold: str) -> tuple[list[str], list[str]]:
    try:
        keep, held = held_out_rows(labels, len(ids), fraction, seed)
    except ValueError as error:  # a class too small to stratify
        raise FoldError(f"fold {fold}: cannot draw a stratified dev split ({error})", "use --dev speaker") from None
    return ids[np.sort(keep)].tolist(), ids[np.sort(held)].tolist()  # manifest order: reproducible listings


def dev_split_notes(folds: list[Fold]) -> list[str]:
    """One line per way a dev split departed from its mode (e.g. `auto` drawing rows for lack of
    speakers), naming its folds; nothing when every split is what its mode says."""
    by_mode: dict[str, list[str]] = {}
    for fold in folds:
        if "(" in fold.dev_split:
            by_mode.setdefault(fold.dev_split, []).append(fold.name)
    return [f"dev split of fold{'s' if len(names) > 1 else ''} {', '.join(names)}: {mode}"
            for mode, names in by_mode.items()]


def unlearnable_class_notes(folds: list[Fold], df: pd.DataFrame, label_column: str | None = "label") -> list[str]:
    """One line per fold whose test part holds a class that its training part lacks: the head
    cannot learn that class, and UA counts its recall as 0."""
    if label_column is None or label_column not in df.columns:
        return []
    labels = df.set_index("id")[label_column].astype(str)
    notes = []
    for fold in folds:
        test_counts = labels[fold.test].value_counts()
        missing = sorted(set(test_counts.index) - set(labels[fold.train]))
        if missing:
            counted = ", ".join(f"{label} ({test_counts[label]} test utterances)" for label in missing)
            notes.append(f"fold {fold.name}: no training utterance of {counted}: the head cannot learn "
                         f"{'it' if len(missing) == 1 else 'them'}, and UA counts the recall as 0")
    return notes


def check_fold(fold: Fold, df: pd.DataFrame, scheme: str) -> None:
    """Refuse overlapping parts, empty parts, and (session/speaker schemes) speakers in train and test."""
    train, dev, test = set(fold.train), set(fold.dev), set(fold.test)
    if not train or not test:
        raise FoldError(f"fold {fold.name} has an empty {'train' if not train else 'test'} part")
    if train & test or dev & test or train & dev:
        raise FoldError(f"fold {fold.name}: an utterance appears in two of train/dev/test")
    if scheme in ("session", "speaker") and "speaker" in df.columns:
        speakers = df.set_index("id")["speaker"]
        leaked = set(speakers[list(train | dev)].dropna()) & set(speakers[list(test)].dropna())
        if leaked:
            raise FoldError(
                f"fold {fold.name}: speaker(s) {', '.join(sorted(map(str, leaked))[:5])} "
                "appear in both training and test",
                "speaker ids must be unique to one session; fix the manifest's speaker column",
            )
