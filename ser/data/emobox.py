"""EmoBox's published folds as a predefined protocol (`--folds emobox:DIR`, `ser folds --import DIR`).

EmoBox (github.com/emo-box/EmoBox) fixes the folds of 32 corpora so that results compare across
papers. Its layout, per corpus: `data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl`, plus
`<corpus>_valid_fold_<k>.jsonl` where the corpus has an official dev set; one JSON object per line:

    {"key": "iemocap-Ses01F_impro04_F000", "dataset": "iemocap",
     "wav": "downloads/iemocap/Session1/sentences/wav/Ses01F_impro04/Ses01F_impro04_F000.wav",
     "type": "raw", "sample_rate": 16000, "num_frame": 70312.0, "task": "category",
     "length": 4.3945, "emo": "neu", "channel": 1}

DIR is that corpus folder (holding `fold_<k>/`) or EmoBox's `data/` folder (the corpus is then the
manifest's). Entries are matched to manifest rows by id (`key`, or `key` without its `<dataset>-`
prefix), else by the longest unique tail of the audio path (file name, then parent folders).
Entries that match no usable row, and usable rows that no fold tests, are listed, not guessed.
Dev is EmoBox's valid file when there is one (its rows leave train), else the protocol's seeded
share of train (whole speakers by default: fold.py's `dev_split`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from ser.data.fold import Fold, check_fold, dev_split, usable_rows
from ser.errors import FoldError

EMOBOX_SCHEME = "emobox"
PARTS = ("train", "valid", "test")
PATH_TAIL_DEPTH = 3  # at most this many trailing path components are compared


@dataclass(frozen=True)
class EmoBoxEntry:
    key: str
    dataset: str
    wav: str
    emo: str | None = None


@dataclass
class EmoBoxProtocol:
    """The matched folds and everything that did not match."""

    folds: list[Fold]
    unmatched: list[str] = field(default_factory=list)  # EmoBox keys with no usable manifest row
    untested: list[str] = field(default_factory=list)  # usable manifest ids in no fold's test part
    source: Path | None = None


def corpus_folder(root: Path, corpus: str | None) -> Path:
    """The folder holding `fold_<k>/`: `root` itself, or `root/<corpus>` (EmoBox's data/ folder)."""
    root = Path(root)
    if not root.is_dir():
        raise FoldError(f"EmoBox folder {root} does not exist", "point at EmoBox's data/<corpus> folder")
    if any(root.glob("fold_*")):
        return root
    if corpus and (root / corpus).is_dir() and any((root / corpus).glob("fold_*")):
        return root / corpus
    raise FoldError(f"{root} holds no EmoBox fold_<k>/ folders" + (f" (nor {corpus}/fold_<k>/)" if corpus else ""),
                    "point at EmoBox's data/<corpus> folder, e.g. EmoBox/data/iemocap")


def _read_jsonl(path: Path) -> list[EmoBoxEntry]:
    """The entries of one fold file; a key that repeats is refused (matching would fold the copies
    into one row without a word, and the fold would not be the published one)."""
    entries, lines = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            entries.append(EmoBoxEntry(str(item["key"]), str(item.get("dataset", "")), str(item.get("wav", "")),
                                       item.get("emo")))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise FoldError(f"{path}:{number} is not an EmoBox entry ({error})",
                            "each line must be a JSON object with at least `key`") from None
        lines.setdefault(entries[-1].key, []).append(number)
    repeated = {key: numbers for key, numbers in lines.items() if len(numbers) > 1}
    if repeated:
        key, numbers = next(iter(repeated.items()))
        raise FoldError(f"{path}: {len(repeated)} key(s) repeat, e.g. {key!r} on lines "
                        f"{', '.join(map(str, numbers))}", "EmoBox lists each utterance once per file: restore the "
                        "file from EmoBox, or remove the repeated lines")
    return entries


def read_emobox_folds(folder: Path) -> dict[str, dict[str, list[EmoBoxEntry]]]:
    """{fold number: {"train"|"valid"|"test": entries}} from `fold_<k>/<corpus>_<part>_fold_<k>.jsonl`."""
    folds: dict[str, dict[str, list[EmoBoxEntry]]] = {}
    numbered = {d.name[len("fold_"):]: d for d in folder.glob("fold_*") if d.is_dir()}
    for number in sorted(numbered, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n)):
        fold_dir = numbered[number]
        parts = {}
        for part in PARTS:
            found = sorted(fold_dir.glob(f"*_{part}_fold_{number}.jsonl"))
            if found:
                parts[part] = _read_jsonl(found[0])
        if "train" not in parts or "test" not in parts:
            raise FoldError(f"{fold_dir} lacks its *_train_fold_{number}.jsonl or *_test_fold_{number}.jsonl file",
                            "copy the whole fold folder from EmoBox's data/<corpus>/")
        folds[number] = parts
    return folds


def _tail(path: str, depth: int) -> tuple[str, ...]:
    return PurePosixPath(str(path).replace("\\", "/")).parts[-depth:]


class _Matcher:
    """Manifest ids by id and by the tails of their audio paths (only tails that name one row)."""

    def __init__(self, rows: pd.DataFrame):
        self.ids = set(rows["id"].astype(str))
        self.by_tail: dict[tuple[str, ...], str | None] = {}
        for utt, path in zip(rows["id"].astype(str), rows["path"].astype(str)):
            for depth in range(1, PATH_TAIL_DEPTH + 1):
                tail = _tail(path, depth)
                self.by_tail[tail] = None if tail in self.by_tail else utt  # None: ambiguous

    def find(self, entry: EmoBoxEntry) -> str | None:
        prefix = f"{entry.dataset}-"
        for candidate in (entry.key, entry.key[len(prefix):] if entry.key.startswith(prefix) else None):
            if candidate in self.ids:
                return candidate
        for depth in range(PATH_TAIL_DEPTH, 0, -1):
            found = self.by_tail.get(_tail(entry.wav, depth)) if entry.wav else None
            if found is not None:
                return found
        return None


def emobox_folds(
    df: pd.DataFrame,
    root: str | Path,
    seed: int = 0,
    dev: str = "auto",
    dev_fraction: float = 0.2,
    label_column: str | None = "label",
) -> EmoBoxProtocol:
    """EmoBox's folds over the manifest's usable rows, and what did not match."""
    corpus = str(df["corpus"].iloc[0]) if "corpus" in df.columns and df["corpus"].nunique() == 1 else None
    folder = corpus_folder(Path(root), corpus)
    rows = usable_rows(df, label_column)
    matcher = _Matcher(rows)
    position = {utt: row for row, utt in enumerate(rows["id"].astype(str))}  # parts keep manifest order
    unmatched: dict[str, None] = {}
    folds, tested = [], set()
    for number, parts in read_emobox_folds(folder).items():
        ids = {}
        for part, entries in parts.items():
            found = [matcher.find(entry) for entry in entries]
            unmatched.update({entry.key: None for entry, utt in zip(entries, found) if utt is None})
            ids[part] = sorted({utt for utt in found if utt is not None}, key=position.get)
        if not ids["train"] or not ids["test"]:
            raise FoldError(f"EmoBox fold {number}: no {'train' if not ids['train'] else 'test'} entry matches "
                            "the manifest", "check that the manifest is the same corpus as " + str(folder))
        if "valid" in ids and ids["valid"]:
            dev_ids, mode = ids["valid"], "given: EmoBox valid"
            train = [utt for utt in ids["train"] if utt not in set(dev_ids)]  # dev never trains
        else:
            train_part = rows.set_index("id", drop=False).loc[ids["train"]].reset_index(drop=True)
            train, dev_ids, mode = dev_split(train_part, dev, seed, dev_fraction, label_column, number)
        fold = Fold(number, train, dev_ids, ids["test"], mode)
        check_fold(fold, rows, EMOBOX_SCHEME)
        folds.append(fold)
        tested.update(ids["test"])
    if not folds:
        raise FoldError(f"{folder} holds no EmoBox folds")
    untested = [utt for utt in rows["id"].astype(str) if utt not in tested]
    return EmoBoxProtocol(folds, list(unmatched), untested, folder)
