"""IEMOCAP: five dyadic sessions, utterance wavs, EmoEvaluation labels with V/A/D on 1–5."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ser.data.corpora.recipe import CorpusRecipe, corpus_frame, decode
from ser.errors import CorpusError, UserInputError

CODES = {
    "neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad",
    "fru": "frustrated", "fea": "fear", "sur": "surprise", "dis": "disgust", "oth": "other",
    "xxx": "",  # no majority among annotators: kept (with no label) only by --classes all
}  # fmt: skip
CLASS_SETS = {
    "4": ("neutral", "happy", "angry", "sad"),
    "5": ("neutral", "happy", "angry", "sad", "frustrated"),
}
# [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]   (valence, activation, dominance)
EVALUATION_LINE = re.compile(
    r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(Ses\S+)\s+(\S+)\s+\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]"
)
# Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
TRANSCRIPT_LINE = re.compile(r"^(Ses\S+)\s+\[[\d.]+\s*-\s*[\d.]+\]:\s*(.*)$")


def _sessions(root: Path) -> list[Path]:
    if not root.is_dir():
        raise CorpusError(f"iemocap: root {root} is not a folder", "pass the folder that holds Session1 … Session5")
    sessions = sorted(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise CorpusError(
            f"{root} does not look like IEMOCAP: expected folders Session1 … Session5 are missing",
            "pass the IEMOCAP_full_release folder",
        )
    for session in sessions:
        if not (session / "dialog" / "EmoEvaluation").is_dir():
            raise CorpusError(
                f"{root} does not look like IEMOCAP: expected folder {session.name}/dialog/EmoEvaluation/ is missing",
                "pass the IEMOCAP_full_release folder",
            )
    return sessions


def _transcripts(session: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    for file in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
        if file.name.startswith("._"):
            continue
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            match = TRANSCRIPT_LINE.match(line.strip())
            if match:
                texts[match.group(1)] = match.group(2).strip()
    return texts


def _evaluations(session: Path) -> list[dict]:
    rows = []
    for file in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):  # top level only
        if file.name.startswith("._"):
            continue
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            match = EVALUATION_LINE.match(line.strip())
            if not match:
                continue
            _, _, utt_id, code, valence, arousal, dominance = match.groups()
            label = decode(code, CODES, "iemocap", f"{session.name}/dialog/EmoEvaluation/{file.name}")
            dialog = utt_id.rsplit("_", 1)[0]
            gender = utt_id.rsplit("_", 1)[1][0]
            rows.append({
                "id": utt_id,
                "path": str(session / "sentences" / "wav" / dialog / f"{utt_id}.wav"),
                "label": label or None,
                "speaker": f"{utt_id[:5]}{gender}",
                "session": utt_id[:5],
                "gender": gender,
                "arousal": float(arousal),
                "valence": float(valence),
                "dominance": float(dominance),
                "improvised": "_impro" in dialog,
            })  # fmt: skip
    return rows


def prepare_iemocap(root: Path, classes: str = "4", improvised_only: bool = False) -> pd.DataFrame:
    """IEMOCAP utterances. `classes`: "4" (neu, hap+exc, ang, sad), "5" (+ frustrated) or "all"."""
    if classes not in ("4", "5", "all"):
        raise UserInputError(f"iemocap: --classes {classes!r} is not one of 4, 5, all")
    rows, texts = [], {}
    for session in _sessions(Path(root)):
        rows.extend(_evaluations(session))
        texts.update(_transcripts(session))
    if not rows:
        raise CorpusError(f"{root}: no labelled utterance in Session*/dialog/EmoEvaluation/*.txt")
    df = corpus_frame(rows, "iemocap")
    if classes != "all":
        df["label"] = df["label"].replace({"excited": "happy"})
        df = df[df["label"].isin(CLASS_SETS[classes])]
    if improvised_only:
        df = df[df["improvised"]]
    df = df.drop(columns="improvised")
    df["text"] = df["id"].map(texts)
    return df.reset_index(drop=True)


RECIPE = CorpusRecipe(
    name="iemocap",
    prepare=prepare_iemocap,
    default_scheme="session",
    labels=tuple(sorted({label for label in CODES.values() if label})),
    help="IEMOCAP (5 sessions, 10 speakers); 4-class neu/hap+exc/ang/sad by default; V/A/D 1–5; transcripts",
    options=("classes", "improvised_only"),
)
