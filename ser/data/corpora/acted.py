"""English acted corpora whose labels live in the file names: RAVDESS, SAVEE, CREMA-D, TESS."""

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
from ser.errors import CorpusError

RAVDESS_CODES = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fear", "07": "disgust", "08": "surprise",
}  # fmt: skip
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def prepare_ravdess(root: Path) -> pd.DataFrame:
    """RAVDESS speech: Actor_XX/03-01-EE-II-SS-RR-AA.wav (audio-only speech; song files skipped)."""
    root = Path(root)
    pattern = "Actor_XX/MM-CC-EE-II-SS-RR-AA.wav"
    files = require_audio(audio_files(root, "**/Actor_[0-9][0-9]/*"), root, pattern, "RAVDESS")
    rows = []
    for file, match in match_all(files, RAVDESS_NAME, "ravdess", pattern):
        modality, channel, emotion, intensity, _, _, actor = match.groups()
        if modality != "03" or channel != "01":  # 03 = audio-only, 01 = speech (02 = song)
            continue
        rows.append({
            "id": file.stem,
            "path": str(file),
            "label": decode(emotion, RAVDESS_CODES, "ravdess", file.name),
            "speaker": f"actor{actor}",
            "gender": "M" if int(actor) % 2 else "F",
            "intensity": "normal" if intensity == "01" else "strong",
        })  # fmt: skip
    return corpus_frame(rows, "ravdess")


SAVEE_CODES = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise"}
SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
SAVEE_NESTED = re.compile(r"^([a-z]{1,2})(\d\d)$")
SAVEE_FLAT = re.compile(r"^(DC|JE|JK|KL)_([a-z]{1,2})(\d\d)$")


def prepare_savee(root: Path) -> pd.DataFrame:
    """SAVEE: AudioData/<DC|JE|JK|KL>/<code><nn>.wav or flat <spk>_<code><nn>.wav; four male speakers."""
    root = Path(root)
    pattern = "AudioData/<DC|JE|JK|KL>/<a|d|f|h|n|sa|su><nn>.wav or <spk>_<code><nn>.wav"
    files = require_audio(audio_files(root), root, pattern, "SAVEE")
    rows, bad = [], []
    for file in files:
        flat, nested = SAVEE_FLAT.match(file.stem), SAVEE_NESTED.match(file.stem)
        if flat:
            speaker, code, number = flat.groups()
        elif nested and file.parent.name in SAVEE_SPEAKERS:
            speaker, (code, number) = file.parent.name, nested.groups()
        else:
            bad.append(file)
            continue
        rows.append({
            "id": f"{speaker}_{code}{number}",
            "path": str(file),
            "label": decode(code, SAVEE_CODES, "savee", str(file.relative_to(root))),
            "speaker": speaker,
            "gender": "M",
        })  # fmt: skip
    if bad:
        raise unexpected_name("savee", bad[0], pattern, len(bad))
    return corpus_frame(rows, "savee")


CREMA_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMA_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def _crema_genders(root: Path) -> dict[str, str]:
    table = root / "VideoDemographics.csv"
    if not table.is_file():
        return {}
    demographics = pd.read_csv(table, dtype=str)
    if not {"ActorID", "Sex"} <= set(demographics.columns):
        raise CorpusError("crema-d: VideoDemographics.csv lacks the ActorID and Sex columns")
    return {a.strip(): s.strip()[:1].upper() for a, s in zip(demographics["ActorID"], demographics["Sex"])}


def prepare_crema_d(root: Path) -> pd.DataFrame:
    """CREMA-D: AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav; gender from VideoDemographics.csv if present."""
    root = Path(root)
    pattern = "AudioWAV/1001_DFA_ANG_XX.wav"
    files = require_audio(audio_files(require_folder(root, "AudioWAV", "CREMA-D"), "*"), root, pattern, "CREMA-D")
    genders = _crema_genders(root)
    rows = []
    for file, match in match_all(files, CREMA_NAME, "crema-d", pattern):
        actor, sentence, emotion, level = match.groups()
        rows.append({
            "id": file.stem,
            "path": str(file),
            "label": decode(emotion, CREMA_CODES, "crema-d", file.name),
            "speaker": actor,
            "gender": genders.get(actor),
            "intensity": level,
        })  # fmt: skip
    return corpus_frame(rows, "crema-d")


TESS_CODES = {
    "angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
    "neutral": "neutral", "ps": "surprise", "sad": "sad",
}  # fmt: skip
TESS_NAME = re.compile(r"^(OAF|YAF)_(\w+?)_([A-Za-z]+)$", re.IGNORECASE)


def prepare_tess(root: Path) -> pd.DataFrame:
    """TESS: <OAF|YAF>_<word>_<emotion>.wav anywhere under ROOT; two female speakers."""
    root = Path(root)
    pattern = "<OAF|YAF>_<word>_<emotion>.wav"
    files = require_audio(audio_files(root), root, pattern, "TESS")
    rows = []
    for file, match in match_all(files, TESS_NAME, "tess", pattern):
        speaker, word, emotion = match.groups()
        rows.append({
            "id": f"{speaker.upper()}_{word.lower()}_{emotion.lower()}",
            "path": str(file),
            "label": decode(emotion.lower(), TESS_CODES, "tess", file.name),
            "speaker": speaker.upper(),
            "gender": "F",
        })  # fmt: skip
    return corpus_frame(rows, "tess")


RAVDESS = CorpusRecipe(
    "ravdess", prepare_ravdess, "speaker", tuple(sorted(RAVDESS_CODES.values())),
    "RAVDESS speech: 24 actors × 8 emotions (1,440 files); actor-disjoint folds (6 actor groups)",
    default_k=6,
)  # fmt: skip
SAVEE = CorpusRecipe(
    "savee", prepare_savee, "speaker", tuple(sorted(SAVEE_CODES.values())),
    "SAVEE: 4 male speakers × 7 emotions (480 files); leave-one-speaker-out",
)  # fmt: skip
CREMA_D = CorpusRecipe(
    "crema-d", prepare_crema_d, "speaker", tuple(sorted(CREMA_CODES.values())),
    "CREMA-D: 91 actors × 6 emotions (7,442 clips); actor-disjoint folds (5 actor groups)",
    default_k=5,
)  # fmt: skip
TESS = CorpusRecipe(
    "tess", prepare_tess, "speaker", tuple(sorted(set(TESS_CODES.values()))),
    "TESS: 2 female speakers × 7 emotions; leave-one-speaker-out",
)  # fmt: skip
