"""The MSP corpora: MSP-Podcast (official Split_Set, dimensions 1–7) and MSP-IMPROV (6 sessions)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ser.data.corpora.recipe import CorpusRecipe, corpus_frame, decode, number, require_file, require_folder
from ser.errors import CorpusError, UserInputError

PODCAST_CODES = {
    "N": "neutral", "H": "happy", "S": "sad", "A": "angry", "U": "surprise", "F": "fear",
    "D": "disgust", "C": "contempt", "O": "other", "X": "",  # X: no consensus (no label)
}  # fmt: skip
PODCAST_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
SPLITS = {"train": "train", "development": "dev", "test1": "test", "test2": "test2", "test3": "test3"}
FOUR_CLASSES = ("neutral", "happy", "angry", "sad")


def _podcast_split(value: str, row: int) -> str:
    key = str(value).strip().lower()
    if key not in SPLITS:
        raise CorpusError(
            f"msp-podcast: unknown Split_Set {value!r} in Labels/labels_consensus.csv row {row + 1}",
            "known values: " + ", ".join(("Train", "Development", "Test1", "Test2", "Test3")),
        )
    return SPLITS[key]


def prepare_msp_podcast(root: Path, classes: str = "all") -> pd.DataFrame:
    """MSP-Podcast: categories, arousal/valence/dominance (1–7) and the official split (Test1 → test).

    `classes`: "all" keeps every row (X = no consensus gets no label), "4" keeps neu/hap/ang/sad.
    """
    if classes not in ("4", "all"):
        raise UserInputError(f"msp-podcast: --classes {classes!r} is not one of 4, all")
    root = Path(root)
    table_file = require_file(root, "Labels/labels_consensus.csv", "MSP-Podcast")
    audio = require_folder(root, "Audios", "MSP-Podcast")
    table = pd.read_csv(table_file, dtype=str, keep_default_na=False)
    absent = [c for c in PODCAST_COLUMNS if c not in table.columns]
    if absent:
        raise CorpusError(f"msp-podcast: Labels/labels_consensus.csv lacks the column(s) {', '.join(absent)}")
    rows = []
    for i, record in enumerate(table.itertuples(index=False)):
        where = f"Labels/labels_consensus.csv row {i + 1}"
        label = decode(record.EmoClass.strip(), PODCAST_CODES, "msp-podcast", where)
        speaker = record.SpkrID.strip()
        rows.append({
            "id": Path(record.FileName).stem,
            "path": str(audio / record.FileName),
            "label": label or None,
            "speaker": None if speaker.lower() in ("", "unknown") else speaker,
            "gender": {"female": "F", "male": "M"}.get(record.Gender.strip().lower()),
            "split": _podcast_split(record.Split_Set, i),
            "arousal": number(record.EmoAct, "msp-podcast", where),
            "valence": number(record.EmoVal, "msp-podcast", where),
            "dominance": number(record.EmoDom, "msp-podcast", where),
        })  # fmt: skip
    df = corpus_frame(rows, "msp-podcast")
    if classes == "4":
        df = df[df["label"].isin(FOUR_CLASSES)]
    return df.reset_index(drop=True)


IMPROV_CODES = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral", "O": "other", "X": ""}
# UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:2.333333; V:3.000000; D:2.666667 ; N:3.000000;
IMPROV_LINE = re.compile(
    r"^UTD-IMPROV-((S\d\d)[A-Z]-([FM]\d\d)-([A-Z])-[A-Z0-9]+)\.avi;\s*([A-Z]);"
    r"\s*A:([\d.]+|NaN)\s*;\s*V:([\d.]+|NaN)\s*;\s*D:([\d.]+|NaN)\s*;"
)


def prepare_msp_improv(root: Path, classes: str = "4") -> pd.DataFrame:
    """MSP-IMPROV from Evaluation.txt; audio in session<N>/<S01A>/<P|R|S|T>/MSP-IMPROV-….wav.

    `classes`: "4" (neu, hap, ang, sad — the usual set) or "all" (every consensus row).
    """
    if classes not in ("4", "all"):
        raise UserInputError(f"msp-improv: --classes {classes!r} is not one of 4, all")
    root = Path(root)
    evaluation = require_file(root, "Evaluation.txt", "MSP-IMPROV")
    rows = []
    for line_number, line in enumerate(evaluation.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        match = IMPROV_LINE.match(line.strip())
        if not match:
            continue
        name, sentence_session, speaker, scenario, code, arousal, valence, dominance = match.groups()
        label = decode(code, IMPROV_CODES, "msp-improv", f"Evaluation.txt line {line_number}")
        session = f"session{int(sentence_session[1:])}"
        utt_id = f"MSP-IMPROV-{name}"
        rows.append({
            "id": utt_id,
            "path": str(root / session / name.split("-")[0] / scenario / f"{utt_id}.wav"),
            "label": label or None,
            "speaker": speaker,
            "session": session,
            "gender": speaker[0],
            "arousal": float(arousal),
            "valence": float(valence),
            "dominance": float(dominance),
        })  # fmt: skip
    if not rows:
        raise CorpusError(f"msp-improv: no line of {evaluation} matches `UTD-IMPROV-<name>.avi; <code>; A:…; V:…; D:…`")
    df = corpus_frame(rows, "msp-improv")
    if classes == "4":
        df = df[df["label"].isin(FOUR_CLASSES)]
    return df.reset_index(drop=True)


PODCAST = CorpusRecipe(
    name="msp-podcast",
    prepare=prepare_msp_podcast,
    default_scheme="split",
    labels=tuple(sorted(label for label in PODCAST_CODES.values() if label)),
    help="MSP-Podcast: categories + arousal/valence/dominance (1–7); official Train/Development/Test1 split",
    options=("classes",),
)
IMPROV = CorpusRecipe(
    name="msp-improv",
    prepare=prepare_msp_improv,
    default_scheme="session",
    labels=tuple(sorted(label for label in IMPROV_CODES.values() if label)),
    help="MSP-IMPROV: 6 sessions, 12 actors; 4-class by default; A/V/D 1–5; leave-one-session-out",
    options=("classes",),
)
