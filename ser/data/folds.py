"""Evaluation protocols: which utterances train, select (dev) and test each fold.

Schemes: `session` (leave-one-session-out), `speaker` (leave-one-speaker-out, or k speaker-disjoint
groups), `kfold` (stratified random k-fold: speaker-DEPENDENT, only for comparison with papers
that use it), `split` (the corpus's predefined train/dev/test), `emobox:DIR` (EmoBox's published
folds, emobox.py). Dev is a seeded 20% of each fold's training part: by default (`dev="auto"`)
whole training speakers where the part holds at least 4 of them (held_out_speakers.py), else a
stratified share of rows, as `dev="random"` always draws (the rows scikit-learn's train_test_split
holds out, held_out.py); `dev="speaker"` always holds out whole speakers. Each fold records what
was done (`Fold.dev_split`). scikit-learn is imported only by the schemes that need its splitters:
importing it costs a training process 1.3-2.6 s.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser.data.emobox import emobox_folds
from ser.data.fold import DEV_MODES, Fold, check_fold, dev_split, require_column, usable_rows
from ser.errors import FoldError, UserInputError

SCHEMES = ("session", "speaker", "kfold", "split")
SPEAKER_DEPENDENT_SCHEMES = ("kfold",)
DEFAULT_KFOLD_K = 10  # TIM-Net's protocol
DEV_SPLIT_VALUES = ("dev",)
EMOBOX_PREFIX = "emobox:"  # --folds emobox:DIR
FULL_FOLD = "full"  # `--fold none`: every labelled utterance trains (dev held out), no test


def _has_values(df: pd.DataFrame, column: str, at_least: int = 1) -> bool:
    return column in df.columns and df[column].dropna().nunique() >= at_least


def _protocol(df: pd.DataFrame) -> tuple[str, int | None]:
    """(scheme, k) a manifest is evaluated with by default."""
    from ser.data.corpora import CORPORA

    if "corpus" in df.columns and df["corpus"].nunique() == 1 and df["corpus"].iloc[0] in CORPORA:
        recipe = CORPORA.get(df["corpus"].iloc[0])
        if recipe.default_scheme is not None:
            return recipe.default_scheme, recipe.default_k
    if _has_values(df, "session", 2):
        return "session", None
    if _has_values(df, "speaker", 2):
        return "speaker", None
    return "kfold", None


def default_scheme(df: pd.DataFrame) -> str:
    """The corpus's accepted protocol (via the `corpus` column), else session, speaker or kfold by columns."""
    return _protocol(df)[0]


def _test_groups(
    df: pd.DataFrame, scheme: str, k: int | None, seed: int, label_column: str | None
) -> list[tuple[str, np.ndarray]]:
    """(fold name, boolean test mask) for each fold of the scheme."""
    if scheme in ("session", "speaker") and (k is None or scheme == "session"):
        if k is not None:
            raise UserInputError("--k applies to --folds kfold and --folds speaker only")
        values = require_column(df, scheme, scheme)
        if len(set(values)) < 2:
            raise FoldError(f"--folds {scheme} needs at least 2 {scheme}s, the manifest has {len(set(values))}")
        return [(value, values == value) for value in sorted(set(values))]
    if scheme == "speaker":  # k speaker-disjoint groups
        speakers = require_column(df, "speaker", scheme)
        if not 2 <= k <= len(set(speakers)):
            raise FoldError(f"--folds speaker --k {k}: need 2 <= k <= {len(set(speakers))} speakers")
        labels = df[label_column].astype(str).to_numpy() if label_column else np.zeros(len(df))
        from sklearn.model_selection import StratifiedGroupKFold

        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(df)), labels, groups=speakers)
        return [(str(i + 1), np.isin(np.arange(len(df)), test)) for i, (_, test) in enumerate(parts)]
    if scheme == "kfold":
        asked = f"--folds kfold --k {k}" if k is not None else f"kfold's default of {DEFAULT_KFOLD_K} folds"
        k = DEFAULT_KFOLD_K if k is None else k
        if k < 2 or k > len(df):
            raise FoldError(f"{asked} needs 2 <= k <= {len(df)}, the number of labelled rows",
                            f"give --k between 2 and {len(df)}" if len(df) >= 2 else "label at least 2 rows")
        from sklearn.model_selection import KFold, StratifiedKFold

        if label_column:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            try:
                parts = list(splitter.split(np.zeros(len(df)), df[label_column].astype(str).to_numpy()))
            except ValueError as error:
                raise FoldError(f"--folds kfold --k {k}: {error}", "use a smaller --k") from None
        else:
            parts = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(df))))
        return [(str(i + 1), np.isin(np.arange(len(df)), test)) for i, (_, test) in enumerate(parts)]
    if scheme == "split":
        if k is not None:
            raise UserInputError("--k applies to --folds kfold and --folds speaker only")
        splits = require_column(df, "split", scheme)
        tests = sorted(s for s in set(splits) if s.startswith("test"))
        if "train" not in set(splits) or not tests:
            raise FoldError(
                "--folds split needs `split` values train and test (dev optional)", f"found: {sorted(set(splits))}"
            )
        return [(name, splits == name) for name in tests]
    raise UserInputError(f"unknown fold scheme {scheme!r}", "choose one of: " + ", ".join(SCHEMES))


def make_folds(
    df: pd.DataFrame,
    scheme: str | None = None,
    k: int | None = None,
    seed: int = 0,
    dev: str = "auto",
    dev_fraction: float = 0.2,
    label_column: str | None = "label",
) -> list[Fold]:
    """The folds of a manifest under `scheme` (None → the corpus's default protocol).

    Only rows with a label take part (label_column=None: every row, no stratification).
    """
    if dev not in DEV_MODES:
        raise UserInputError(f"unknown --dev {dev!r}", "choose " + ", ".join(DEV_MODES))
    if not 0 < dev_fraction < 1:
        raise UserInputError(f"dev fraction {dev_fraction} is not between 0 and 1")
    if scheme is not None and scheme.startswith(EMOBOX_PREFIX):
        if k is not None:
            raise UserInputError("--k does not apply to EmoBox folds", "EmoBox fixes the number of folds")
        return emobox_folds(df, scheme[len(EMOBOX_PREFIX):], seed, dev, dev_fraction, label_column).folds
    if scheme is None:
        scheme, default_k = _protocol(df)
        k = default_k if k is None else k
    if scheme not in SCHEMES:
        raise UserInputError(f"unknown fold scheme {scheme!r}", "choose one of: " + ", ".join(SCHEMES))
    rows = usable_rows(df, label_column)
    if rows.empty:
        raise FoldError(f"no rows with a {label_column!r} value to make folds from")
    folds = []
    for name, test_mask in _test_groups(rows, scheme, k, seed, label_column):
        test_ids = rows.loc[test_mask, "id"].tolist()
        if scheme == "split":  # predefined parts; dev drawn from train only when none is given
            splits = require_column(rows, "split", scheme)
            train_part, given_dev = rows[splits == "train"], rows[np.isin(splits, DEV_SPLIT_VALUES)]
            if not given_dev.empty:
                folds.append(Fold(name, train_part["id"].tolist(), given_dev["id"].tolist(), test_ids,
                                  "given: split=dev"))
                continue
        else:
            train_part = rows[~test_mask]
        split = dev_split(train_part, dev, seed, dev_fraction, label_column, name,
                          speakers_in_test=scheme in SPEAKER_DEPENDENT_SCHEMES)
        folds.append(Fold(name, split.train, split.dev, test_ids, split.mode))
    for fold in folds:
        check_fold(fold, rows, scheme)
    return folds


def full_data_fold(
    df: pd.DataFrame, seed: int = 0, dev: str = "auto", dev_fraction: float = 0.2, label_column: str | None = "label"
) -> Fold:
    """The model one deploys: train on every usable row except a seeded dev share (for epoch
    selection), with no test set. Named `full`."""
    rows = usable_rows(df, label_column)
    split = dev_split(rows, dev, seed, dev_fraction, label_column, FULL_FOLD)
    return Fold(FULL_FOLD, split.train, split.dev, [], split.mode)


def apply_label_map(df: pd.DataFrame, label_map: dict[str, str | None], label_column: str = "label") -> pd.DataFrame:
    """Rename labels with `label_map` (a None/"" value drops that label's rows); other labels are kept."""
    mapped = df[label_column].map(lambda label: label_map.get(label, label) if pd.notna(label) else label)
    mapped = mapped.map(lambda label: None if label is None or (isinstance(label, str) and not label) else label)
    return df.assign(**{label_column: mapped})[mapped.notna()].reset_index(drop=True)


def cross_corpus_fold(
    train_df: pd.DataFrame,
    test_df: pd.DataFrame,
    label_map: dict[str, str | None] | None = None,
    seed: int = 0,
    dev: str = "auto",
    dev_fraction: float = 0.2,
    label_column: str = "label",
) -> Fold:
    """Train (and dev) on one corpus, test on another whose labels `label_map` maps into the training set.

    Every test label must end up a training label or be dropped explicitly (mapped to None/"").
    Use `apply_label_map(test_df, label_map)` for the mapped test labels.
    """
    train_rows = usable_rows(train_df, label_column)
    test_rows = apply_label_map(usable_rows(test_df, label_column), label_map or {}, label_column)
    known = set(train_rows[label_column].astype(str))
    unmapped = sorted(set(test_rows[label_column].astype(str)) - known)
    if unmapped:
        raise FoldError(
            f"test labels {', '.join(unmapped)} are not training labels ({', '.join(sorted(known))})",
            "map them onto training labels, or drop them by mapping to nothing (e.g. fear=)",
        )
    if test_rows.empty:
        raise FoldError("no test utterance is left after the label mapping")
    name = f"{_corpus_name(train_df)}-to-{_corpus_name(test_df)}"
    split = dev_split(train_rows, dev, seed, dev_fraction, label_column, name)
    return Fold(name, split.train, split.dev, test_rows["id"].tolist(), split.mode)


def _corpus_name(df: pd.DataFrame) -> str:
    if "corpus" in df.columns and df["corpus"].nunique() == 1:
        return str(df["corpus"].iloc[0])
    return "manifest"


def describe_folds(df: pd.DataFrame, folds: list[Fold], label_column: str | None = "label") -> pd.DataFrame:
    """One row per fold: train/dev/test sizes, test speakers and the test part's class counts."""
    table = df.set_index("id")
    rows = []
    for fold in folds:
        row = {"fold": fold.name, "train": len(fold.train), "dev": len(fold.dev), "test": len(fold.test)}
        if "speaker" in table.columns:
            row["test speakers"] = int(table.loc[fold.test, "speaker"].nunique())
        if label_column and label_column in table.columns:
            row.update(table.loc[fold.test, label_column].astype(str).value_counts().sort_index().to_dict())
        rows.append(row)
    summary = pd.DataFrame(rows)
    counts = [c for c in summary.columns if c not in ("fold", "train", "dev", "test", "test speakers")]
    summary[counts] = summary[counts].fillna(0).astype(int)
    return summary
