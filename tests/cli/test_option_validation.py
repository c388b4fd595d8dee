"""Bad option values stop at the command line's edge: one usage error, exit 2, nothing loaded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import SerError

BAD = [
    (["extract", "--model", "fbank", "--max-seconds", "-1"], "--max-seconds"),
    (["extract", "--model", "fbank", "--max-seconds", "0"], "--max-seconds"),
    (["extract", "--model", "fbank", "--batch-seconds", "0"], "--batch-seconds"),
    (["extract", "--model", "fbank", "--batch-seconds", "-3"], "--batch-seconds"),
    (["extract", "--model", "fbank", "--precision", "fp17"], "--precision"),
    (["train", "--head", "cnn", "--seed", "-1"], "--seed"),
    (["train", "--head", "cnn", "--lr", "nan"], "--lr"),
    (["train", "--head", "cnn", "--lr", "inf"], "--lr"),
    (["train", "--head", "cnn", "--lr", "0"], "--lr"),
    (["train", "--head", "cnn", "--head-option", "num_blocks=-2"], "num_blocks"),
    (["train", "--head", "transformer", "--head-option", "dropout=1.5"], "dropout"),
    (["sweep", "--head", "cnn", "--lr", "1e-3,nan"], "--lr"),
    (["sweep", "--head", "cnn", "--seeds", "0,-1"], "--seeds"),
    (["sweep", "--head", "cnn", "--head-option", "num_blocks=1,-2"], "num_blocks"),
]


@pytest.mark.parametrize("argv,named", BAD, ids=[" ".join(argv[2:]) for argv, _ in BAD])
def test_a_bad_value_is_a_usage_error_naming_the_option(argv, named, tmp_path):
    result = CliRunner().invoke(app, [*argv, "--workdir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output and named in result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())


def test_a_good_value_passes_the_edge(tmp_path):
    result = CliRunner().invoke(app, ["extract", "--model", "fbank", "--max-seconds", "2.5", "--precision", "fp32",
                                      "--workdir", str(tmp_path)])
    assert "Invalid value" not in result.output
    assert isinstance(result.exception, SerError) and "manifest" in str(result.exception)  # later: none here


def test_the_real_command_prints_the_error_without_a_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "ser.cli", "extract", "--model", "fbank", "--max-seconds", "-1",
                             "--workdir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "--max-seconds" in result.stderr and "above 0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["train"], ["finetune", "--model", "wavlm-base"], ["distill", "--teacher", "run"]],
                         ids=["train", "finetune", "distill"])
def test_a_head_option_that_is_not_yaml_is_one_line_without_a_traceback(command, tmp_path):
    result = CliRunner().invoke(app, [*command, "--head", "cnn", "--head-option", "kernel_size=[1",
                                      "--workdir", str(tmp_path)])
    assert isinstance(result.exception, SerError)
    assert result.exception.message == ("bad --head-option 'kernel_size=[1': expected ',' or ']', but got "
                                        "'<stream end>' (line 1, column 3)")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["train"], ["finetune", "--model", "wavlm-base"]], ids=["train", "finetune"])
@pytest.mark.parametrize("option,message", [
    ("kernel_size=x", "head 'cnn' option kernel_size='x' is not a whole number"),
    ("layers=[0, a]", "head 'cnn' option layers=[0, 'a'] is not a whole number or a list of whole numbers"),
    ("layer_norm=[1]", "head 'cnn' option layer_norm=[1] is not true or false"),
])
def test_a_head_option_of_the_wrong_type_is_refused_before_anything_loads(command, option, message, tmp_path):
    """`--head-option hidden_size=x` reached the head's constructor: torch's TypeError traceback."""
    result = CliRunner().invoke(app, [*command, "--head", "cnn", "--head-option", option, "--workdir", str(tmp_path)])
    assert isinstance(result.exception, SerError), result.output
    assert result.exception.message == message
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["train", "--head", "cnn"], ["probe"], ["extract", "--model", "fbank"]],
                         ids=["train", "probe", "extract"])
def test_a_workdir_that_is_a_file_is_named_as_such(command, tmp_path):
    """It said "no manifest in notes.txt/manifests" (or failed later to create folders under it)."""
    afile = tmp_path / "notes.txt"
    afile.write_text("not a workspace\n")
    result = CliRunner().invoke(app, [*command, "--workdir", str(afile)], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "is a file, not a workspace folder" in result.output, result.output
    assert afile.read_text() == "not a workspace\n"


def test_report_of_a_missing_folder_says_it_does_not_exist(tmp_path):
    """It said "… is not a folder" of a path that does not exist at all."""
    afile = tmp_path / "a.csv"
    afile.write_text("x\n")
    for target, problem in ((tmp_path / "nowhere", "does not exist"), (afile, "is not a folder")):
        result = CliRunner().invoke(app, ["report", str(target)])
        assert isinstance(result.exception, SerError) and result.exception.message == f"{target} {problem}"
