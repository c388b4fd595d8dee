"""Which folds a run trains: the protocol's folds over the loaded data (or the one cross-corpus
fold), a selection of them by number or name, and their directory names."""

from __future__ import annotations

import dataclasses
import sys

from ser.data.fold import Fold, dev_split_notes, unlearnable_class_notes
from ser.data.folds import FULL_FOLD, cross_corpus_fold, full_data_fold, make_folds
from ser.errors import UserInputError
from ser.training.config import TrainConfig
from ser.training.training_data import TrainingData


def protocol_folds(config: TrainConfig, data: TrainingData) -> list[Fold]:
    """The folds of the config's protocol over the usable utterances (cross-corpus data: one fold,
    `cross-<test corpus>`, training and dev from the training corpus, test = the whole test corpus)."""
    if data.cross is not None:
        return announce_fold_notes([cross_corpus_data_fold(config, data)])
    folds = make_folds(data.labelled_table, scheme=config.folds, k=config.k, seed=config.fold_seed, dev=config.dev,
                       dev_fraction=config.dev_fraction, label_column=data.task.fold_label_column)
    return announce_fold_notes(folds, data.labelled_table, data.task.fold_label_column)


def announce_fold_notes(folds: list[Fold], table=None, label_column: str | None = None) -> list[Fold]:
    """`folds`, after one stderr line per way their dev splits departed from the asked mode (e.g.
    `--dev auto` drawing rows where a training part has fewer than 4 speakers) and, given the
    table, one per fold whose test part holds a class its training part lacks. Each fold's
    config.json records its own dev split (`dev_split`)."""
    notes = dev_split_notes(folds) + ([] if table is None else unlearnable_class_notes(folds, table, label_column))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return folds


def cross_corpus_data_fold(config: TrainConfig, data: TrainingData) -> Fold:
    """The one fold of cross-corpus data: dev = a seeded share of the training corpus (per `config.dev`)."""
    if config.folds is not None or config.k is not None:
        raise UserInputError("--folds and --k do not apply with --test-manifest",
                             "cross-corpus training has one fold: the whole test corpus")
    split = data.cross.train_rows
    fold = cross_corpus_fold(data.table.iloc[:split], data.table.iloc[split:], seed=config.fold_seed, dev=config.dev,
                             dev_fraction=config.dev_fraction, label_column=data.task.fold_label_column)
    return dataclasses.replace(fold, name=f"cross-{data.cross.test_corpus}")


NO_TEST = "none"  # `--fold none`: one fold, `full`, trained on every labelled utterance


def no_test_fold(config: TrainConfig, data: TrainingData) -> Fold:
    """`--fold none`: every labelled utterance trains except the dev share that selects the epoch."""
    if data.cross is not None:
        raise UserInputError("--fold none does not apply with --test-manifest", "it trains without any test set")
    return announce_fold_notes([full_data_fold(data.labelled_table, seed=config.fold_seed, dev=config.dev,
                                               dev_fraction=config.dev_fraction,
                                               label_column=data.task.fold_label_column)])[0]


def select_folds(folds: list[Fold], which: str) -> list[tuple[int, Fold]]:
    """`all`, a fold name (a session, a speaker, …) or a fold number K as in `fold<K>` (1-based)
    → [(0-based position, fold)]."""
    if which == "all":
        return list(enumerate(folds))
    for index, fold in enumerate(folds):
        if which == fold.name:
            return [(index, fold)]
    for index, fold in enumerate(folds):
        if which == str(index + 1):
            return [(index, fold)]
    names = ", ".join(str(i + 1) if fold.name == str(i + 1) else f"{i + 1} ({fold.name})"
                      for i, fold in enumerate(folds))
    raise UserInputError(f"no fold {which!r} in this protocol", f"choose all, or a number or name: {names}")


def fold_dir_name(index: int) -> str:
    """The folder of the fold at 0-based position `index`: fold1, fold2, …"""
    return f"fold{index + 1}"


def fold_dir_of(fold: Fold, index: int) -> str:
    """The folder of a trained fold: fold<K>, or `full` for the no-test fold."""
    return FULL_FOLD if fold.name == FULL_FOLD and not fold.test else fold_dir_name(index)
