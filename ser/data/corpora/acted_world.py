"""Acted corpora in German, Italian and Mandarin: EmoDB, EMOVO, CASIA."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ser.data.corpora.recipe import (
    CorpusRecipe,
    audio_files,
    corpus_frame,
    decode,
    match_all,
    require_audio,
    require_folder,
    unexpected_name,
)

EMODB_CODES = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fear",
    "F": "happy", "T": "sad", "N": "neutral",
}  # fmt: skip
EMODB_GENDERS = {
    "03": "M", "08": "F", "09": "F", "10": "M", "11": "M",
    "12": "M", "13": "F", "14": "F", "15": "M", "16": "F",
}  # fmt: skip
EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")


def prepare_emodb(root: Path) -> pd.DataFrame:
    """EmoDB: wav/<spk 2><text 3><emotion 1><version 1>.wav, e.g. wav/03a01Fa.wav; 10 speakers."""
    root = Path(root)
    pattern = "wav/03a01Fa.wav (speaker, text, emotion, version)"
    files = require_audio(audio_files(require_folder(root, "wav", "EmoDB"), "*"), root, pattern, "EmoDB")
    rows = []
    for file, match in match_all(files, EMODB_NAME, "emodb", pattern):
        speaker, _, emotion, _ = match.groups()
        rows.append({
            "id": file.stem,
            "path": str(file),
            "label": decode(emotion, EMODB_CODES, "emodb", file.name),
            "speaker": speaker,
            "gender": EMODB_GENDERS.get(speaker),
        })  # fmt: skip
    return corpus_frame(rows, "emodb")


EMOVO_CODES = {
    "dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear",
    "rab": "angry", "sor": "surprise", "tri": "sad",
}  # fmt: skip
EMOVO_NAME = re.compile(r"^([a-z]{3})-(\w+)-([fm]\d)$", re.IGNORECASE)


def prepare_emovo(root: Path) -> pd.DataFrame:
    """EMOVO: <spk>/<emo>-<sentence>-<spk>.wav (speakers f1–f3, m1–m3; 7 emotions, Italian)."""
    root = Path(root)
    pattern = "<spk>/<emo>-<sentence>-<spk>.wav, e.g. f1/gio-b1-f1.wav"
    files = require_audio(audio_files(root), root, pattern, "EMOVO")
    rows = []
    for file, match in match_all(files, EMOVO_NAME, "emovo", pattern):
        emotion, _, speaker = match.groups()
        rows.append({
            "id": file.stem.lower(),
            "path": str(file),
            "label": decode(emotion.lower(), EMOVO_CODES, "emovo", file.name),
            "speaker": speaker.lower(),
            "gender": speaker[0].upper(),
        })  # fmt: skip
    return corpus_frame(rows, "emovo")


CASIA_CODES = {e: e for e in ("angry", "fear", "happy", "neutral", "sad", "surprise")}
CASIA_GENDERS = {"liuchang": "F", "wangzhe": "M", "zhaoquanyin": "F", "zhaozuoxiang": "M"}


def prepare_casia(root: Path) -> pd.DataFrame:
    """CASIA: <speaker>/<emotion>/<id>.wav at any depth under ROOT; 4 speakers × 6 emotions."""
    root = Path(root)
    pattern = "<speaker>/<angry|fear|happy|neutral|sad|surprise>/<id>.wav"
    files = require_audio(audio_files(root), root, pattern, "CASIA")
    outside = [f for f in files if f.parent.name.lower() not in CASIA_CODES or f.parent.parent == root]
    if outside:
        raise unexpected_name("casia", outside[0], pattern, len(outside))
    rows = []
    for file in files:
        emotion, speaker = file.parent.name.lower(), file.parent.parent.name
        rows.append({
            "id": f"{speaker}_{emotion}_{file.stem}",
            "path": str(file),
            "label": decode(emotion, CASIA_CODES, "casia", str(file.relative_to(root))),
            "speaker": speaker,
            "gender": CASIA_GENDERS.get(speaker.lower()),
        })  # fmt: skip
    return corpus_frame(rows, "casia")


EMODB = CorpusRecipe(
    "emodb", prepare_emodb, "speaker", tuple(sorted(EMODB_CODES.values())),
    "EmoDB (Berlin): 10 speakers × 7 emotions (535 files); leave-one-speaker-out (or --folds kfold --k 10)",
)  # fmt: skip
EMOVO = CorpusRecipe(
    "emovo", prepare_emovo, "speaker", tuple(sorted(EMOVO_CODES.values())),
    "EMOVO (Italian): 6 speakers × 7 emotions; leave-one-speaker-out",
)  # fmt: skip
CASIA = CorpusRecipe(
    "casia", prepare_casia, "speaker", tuple(sorted(CASIA_CODES.values())),
    "CASIA (Mandarin): 4 speakers × 6 emotions (1,200 public files); leave-one-speaker-out",
)  # fmt: skip
