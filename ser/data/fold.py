"""One fold: its dataclass, the rows folds are made from, the dev share drawn from a training
part, and the checks every fold passes. Both the protocols (folds.py) and EmoBox's published folds
(emobox.py) build their folds from these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ser.data.held_out import held_out_rows
from ser.errors import FoldError


@dataclass(frozen=True)
class Fold:
    name: str
    train: list[str]
    dev: list[str]
    test: list[str]


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


def dev_split(
    train: pd.DataFrame, dev: str, seed: int, fraction: float, label_column: str | None, fold: str
) -> tuple[list[str], list[str]]:
    """Hold out `fraction` of a training part as dev: stratified rows, or whole speakers."""
    ids = train["id"].to_numpy()
    if dev == "speaker":
        speakers = require_column(train, "speaker", "--dev speaker")
        if len(set(speakers)) < 2:
            raise FoldError(f"fold {fold}: --dev speaker needs at least 2 training speakers", "use --dev random")
        from sklearn.model_selection import GroupShuffleSplit

        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, held = next(splitter.split(ids, groups=speakers))
        return ids[keep].tolist(), ids[held].tolist()
    labels = train[label_column].astype(str).to_numpy() if label_column else None
    try:
        keep, held = held_out_rows(labels, len(ids), fraction, seed)
    except ValueError as error:  # a class too small to stratify
        raise FoldError(f"fold {fold}: cannot draw a stratified dev split ({error})", "use --dev speaker") from None
    return ids[np.sort(keep)].tolist(), ids[np.sort(held)].tolist()  # manifest order: reproducible listings


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
