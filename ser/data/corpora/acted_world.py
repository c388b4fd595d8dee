"""Acted corpora in German, Italian, Mandarin, Amharic and Turkish: EmoDB, EMOVO, CASIA, ASED, TurEV-DB."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ser.data.corpora.recipe import (
    CorpusRecipe,
    audio_files,
    corpus_frame,
    decode,
    folder_disagrees,
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


ASED_CODES = {"n1": "neutral", "f2": "fear", "h3": "happy", "s4": "sad", "a5": "angry"}
ASED_FOLDERS = {"01neutral": "n1", "02fearful": "f2", "03happy": "h3", "04sad": "s4", "05angry": "a5"}
ASED_GENDERS = {"01": "F", "02": "M"}
ASED_NAME = re.compile(r"^([a-z]\d)-(\d\d)-(\d\d)-(0[12])-(\d\d)$", re.IGNORECASE)


def _majority_genders(codes: list[tuple[str, str]]) -> dict[str, str | None]:
    """speaker → the gender most of its files name (None on a tie)."""
    by_speaker: dict[str, Counter] = {}
    for speaker, gender in codes:
        by_speaker.setdefault(speaker, Counter())[gender] += 1
    tops = {s: c.most_common(2) for s, c in by_speaker.items()}
    return {s: top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None for s, top in tops.items()}


def prepare_ased(root: Path) -> pd.DataFrame:
    """ASED v1 (Amharic): <NN><Emotion>/<e><NN>-<sentence>-<repetition>-<gender>-<speaker>.wav.

    The published tree (github.com/wgwangang/ASED_V1) holds 2,474 files from 65 speakers: 01Neutral
    522, 02Fearful 510, 03Happy 486, 04Sad 470, 05Angry 486; sentences 01-07 within each folder,
    repetitions 01-02. The label is read from the folder and from the name's letter + folder
    number (a5 = angry in folder 5); they agree on every published file, and a file where they
    disagree is refused (its label would be a guess). Letters are read case-insensitively (one
    file is 04Sad/S4-04-02-01-29.wav) and ids are lower case. Fearful is written `fear`, as in
    the other recipes. The speaker is the participant number 01-65; gender (01 female, 02 male)
    is the speaker's majority code, not the file's: speakers 09, 15, 21, 23 and 25 each have one
    file coded 02 beside 11-65 files coded 01. The number names the participant, so those are
    typos in a name, not other people; the majority gives 25 female and 40 male speakers, as the
    corpus's README states (a tie would leave gender empty). Audio: 16 kHz mono, 2.1 h. Beware
    length: clips are zero-padded to one of 9 lengths (2.0-3.9 s) that depend on the folder (every
    happy clip is 2.9 s, 3.5 s only sad, 3.9 s only fearful), so clip length alone names the label
    of 1,426 files; a head that sees length or padding can beat chance without listening.
    """
    root = Path(root)
    pattern = "<01Neutral|02Fearful|03Happy|04Sad|05Angry>/<e><N>-<sentence>-<rep>-<gender>-<speaker>.wav"
    files = require_audio(audio_files(root), root, pattern, "ASED")
    outside = [f for f in files if f.parent.name.lower() not in ASED_FOLDERS]
    if outside:
        raise unexpected_name("ased", outside[0], pattern, len(outside))
    matches = match_all(files, ASED_NAME, "ased", pattern)
    misfiled = [f for f, m in matches if m.group(1).lower() != ASED_FOLDERS[f.parent.name.lower()]]
    if misfiled:
        raise folder_disagrees("ased", misfiled[0], len(misfiled))
    genders = _majority_genders([(m.group(5), m.group(4)) for _, m in matches])
    rows = []
    for file, match in matches:
        code, sentence, repetition, _, speaker = match.groups()
        rows.append({
            "id": file.stem.lower(),
            "path": str(file),
            "label": decode(code.lower(), ASED_CODES, "ased", str(file.relative_to(root))),
            "speaker": speaker,
            "gender": ASED_GENDERS.get(genders[speaker]),
            "sentence": sentence,
            "repetition": repetition,
        })  # fmt: skip
    return corpus_frame(rows, "ased")


TUREV_CODES = {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"}  # kızgın, sakin, mutlu, hüzünlü
TUREV_NAME = re.compile(r"^(\d+)_([a-z]{2})_([a-z]+)\d*$", re.IGNORECASE)


def prepare_turev(root: Path) -> pd.DataFrame:
    """TurEV-DB (Turkish): Sound Source/<Angry|Calm|Happy|Sad>/<speaker>_<code>_<word>.wav.

    The published tree (github.com/Xeonen/TurEV-DB) holds 1,735 files of single words: Angry 487,
    Calm 408, Happy 357, Sad 483; 6 speakers (1234, 1358, 1984, 6783: 328 each; 7895: 273, of
    them 29 happy; 1157: 150, angry and sad only). Codes kz/sk/mt/hl name the emotion; they agree
    with the folder on every published file, and a file where they disagree is refused. Only
    Sound Source/ is read: the spectrogram and model-output folders (698 filtered copies of test
    words under the same names) are ignored. `text` is the word in its ASCII spelling (acik =
    açık); 82 words, the trailing digit of Sad/7895_hl_ogul1.wav (that speaker's only sad
    `ogul`) dropped. The repository names no genders. Audio: 44.1 kHz mono, 0.35-2.47 s (median
    0.95 s), 0.46 h. Leaving out 1157 tests angry and sad only.
    """
    root = Path(root)
    pattern = "Sound Source/<Angry|Calm|Happy|Sad>/<speaker>_<kz|sk|mt|hl>_<word>.wav"
    source = require_folder(root, "Sound Source", "TurEV-DB")
    files = require_audio(audio_files(source, "*/*"), root, pattern, "TurEV-DB")
    outside = [f for f in files if f.parent.name.lower() not in TUREV_CODES.values()]
    if outside:
        raise unexpected_name("turev", outside[0], pattern, len(outside))
    rows = []
    for file, match in match_all(files, TUREV_NAME, "turev", pattern):
        speaker, code, word = match.groups()
        rows.append({
            "id": file.stem,
            "path": str(file),
            "label": decode(code.lower(), TUREV_CODES, "turev", str(file.relative_to(root))),
            "speaker": speaker,
            "text": word.lower(),
        })  # fmt: skip
    misfiled = [Path(r["path"]) for r in rows if r["label"] != Path(r["path"]).parent.name.lower()]  # folder = label
    if misfiled:
        raise folder_disagrees("turev", misfiled[0], len(misfiled))
    return corpus_frame(rows, "turev")


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
ASED = CorpusRecipe(
    "ased", prepare_ased, "speaker", tuple(sorted(ASED_CODES.values())),
    "ASED v1 (Amharic): 65 speakers × 5 emotions (2,474 files); speaker-disjoint folds (5 speaker groups)",
    default_k=5,
)  # fmt: skip
TUREV = CorpusRecipe(
    "turev", prepare_turev, "speaker", tuple(sorted(TUREV_CODES.values())),
    "TurEV-DB (Turkish): 6 speakers × 4 emotions (1,735 words); leave-one-speaker-out",
)  # fmt: skip
