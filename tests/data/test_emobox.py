"""EmoBox's published fold files (data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl) as a protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.data.emobox import emobox_folds
from ser.data.folds import make_folds
from ser.data.manifest import write_manifest
from ser.errors import FoldError

LABELS = ("neutral", "happy", "angry", "sad")
EMO = {"neutral": "neu", "happy": "hap", "angry": "ang", "sad": "sad"}  # EmoBox's own label codes


def corpus_rows(sessions: int = 3, per_class: int = 4) -> pd.DataFrame:
    rows = []
    for s in range(1, sessions + 1):
        for gender in "FM":
            for label in LABELS:
                for i in range(per_class):
                    utt = f"Ses0{s}{gender}_{label}_{i}"
                    rows.append({"id": utt, "path": f"Session{s}/wav/{utt}.wav", "label": label,
                                 "speaker": f"S{s}{gender}", "session": f"S{s}", "corpus": "toy"})
    return pd.DataFrame(rows)


def entry(row, dataset: str = "toy") -> dict:
    """One line exactly as EmoBox publishes it."""
    return {"key": f"{dataset}-{row.id}", "dataset": dataset, "wav": f"downloads/{dataset}/{row.path}",
            "type": "raw", "sample_rate": 16000, "num_frame": 32000.0, "task": "category", "length": 2.0,
            "emo": EMO[row.label], "channel": 1}


def write_emobox(root: Path, df: pd.DataFrame, extra_test: list[dict] = (), valid: dict | None = None) -> Path:
    """EmoBox files for leave-one-session-out folds (reverse order: the reader must not depend on it)."""
    folder = root / "data" / "toy"
    for k, session in enumerate(sorted(df["session"].unique()), start=1):
        fold_dir = folder / f"fold_{k}"
        fold_dir.mkdir(parents=True)
        parts = {"train": df[df["session"] != session], "test": df[df["session"] == session]}
        for part, rows in parts.items():
            lines = [entry(row) for row in rows.iloc[::-1].itertuples()] + (list(extra_test) if part == "test" else [])
            (fold_dir / f"toy_{part}_fold_{k}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        if valid is not None and k in valid:
            (fold_dir / f"toy_valid_fold_{k}.jsonl").write_text(
                "".join(json.dumps(entry(row)) + "\n" for row in df[df["id"].isin(valid[k])].itertuples()))
    return folder


def test_emobox_files_give_the_same_folds_as_the_protocol_they_encode(tmp_path):
    df = corpus_rows()
    folder = write_emobox(tmp_path, df)
    expected = make_folds(df, "session", seed=4)
    for root in (folder, folder.parent):  # data/<corpus>, or data/ with the corpus taken from the manifest
        protocol = emobox_folds(df, root, seed=4)
        assert [(f.train, f.dev, f.test) for f in protocol.folds] == [(f.train, f.dev, f.test) for f in expected]
        assert [f.name for f in protocol.folds] == ["1", "2", "3"] and not protocol.unmatched and not protocol.untested
    via_scheme = make_folds(df, f"emobox:{folder}", seed=4)
    assert [f.test for f in via_scheme] == [f.test for f in expected]


def test_rows_match_by_audio_path_when_ids_differ_and_mismatches_are_listed(tmp_path):
    df = corpus_rows()
    stray = {**entry(next(df.itertuples())), "key": "toy-not-in-manifest", "wav": "downloads/toy/gone.wav"}
    folder = write_emobox(tmp_path, df, extra_test=[stray])
    renamed = df.assign(id=[f"utt{i}" for i in range(len(df))])  # other ids: only the audio paths can match
    renamed.loc[0, "label"] = None  # an unlabelled row is not usable: its entries are listed as unmatched
    protocol = emobox_folds(renamed, folder)
    assert protocol.unmatched == [f"toy-{df.loc[0, 'id']}", "toy-not-in-manifest"]
    assert sorted(u for f in protocol.folds for u in f.test) == sorted(renamed["id"][1:])
    extra = renamed.iloc[[5]].assign(id="extra_row", path="elsewhere/extra_row.wav")  # a row EmoBox does not know
    assert emobox_folds(pd.concat([renamed, extra], ignore_index=True), folder).untested == ["extra_row"]


def test_an_official_valid_file_is_the_dev_set(tmp_path):
    df = corpus_rows()
    valid = df[(df["session"] == "S2") & (df["speaker"] == "S2F")]["id"].tolist()
    folder = write_emobox(tmp_path, df, valid={1: valid})
    first = emobox_folds(df, folder).folds[0]
    assert first.dev == valid and not set(first.dev) & (set(first.test) | set(first.train))
    assert len(first.train) + len(first.dev) == (df["session"] != "S1").sum()


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FoldError, match="no EmoBox fold"):
        emobox_folds(corpus_rows(), tmp_path)
    other = corpus_rows().assign(id=lambda d: "x" + d["id"], path="elsewhere.wav")
    with pytest.raises(FoldError, match="no train entry matches"):
        emobox_folds(other, write_emobox(tmp_path, corpus_rows()))


def test_folds_import_prints_the_folds_and_the_mismatches(tmp_path):
    df = corpus_rows()
    write_manifest(df, tmp_path / "ws" / "manifests" / "toy.csv")
    stray = {**entry(next(df.itertuples())), "key": "toy-stray", "wav": "downloads/toy/stray.wav"}
    folder = write_emobox(tmp_path, df, extra_test=[stray])
    result = CliRunner().invoke(app, ["folds", "--workdir", str(tmp_path / "ws"), "--import", str(folder)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "3 folds, scheme emobox:" in result.output
    assert "mismatch: 1 EmoBox entries match no usable manifest row: toy-stray" in result.output


def test_a_key_repeated_in_a_fold_file_is_one_line_not_folded_away(tmp_path):
    import os
    import subprocess
    import sys

    df = corpus_rows()
    write_manifest(df, tmp_path / "ws" / "manifests" / "toy.csv")
    folder = write_emobox(tmp_path, df)
    test_file = folder / "fold_2" / "toy_test_fold_2.jsonl"
    lines = test_file.read_text().splitlines()
    test_file.write_text("\n".join(lines + [lines[0], lines[3], lines[0]]) + "\n")  # two keys repeat
    key = json.loads(lines[0])["key"]
    with pytest.raises(FoldError, match=rf"toy_test_fold_2.jsonl: 2 key\(s\) repeat, e.g. '{key}' on lines 1, "
                                        rf"{len(lines) + 1}, {len(lines) + 3}"):
        emobox_folds(df, folder)
    done = subprocess.run([sys.executable, "-m", "ser.cli", "folds", "--workdir", str(tmp_path / "ws"), "--import",
                           str(folder)], capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "2 key(s) repeat" in done.stderr.splitlines()[0]
