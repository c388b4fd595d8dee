"""`ser distill` from the command line: help with examples, one-line errors."""

import subprocess
import sys


def run(*args, cwd):
    return subprocess.run([sys.executable, "-c", "from ser.cli import run; run()", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_help_lists_the_quality_estimates_and_examples(tmp_path):
    done = run("distill", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for word in ("--teacher", "--quality", "mc-dropout", "heldout", "agreement", "--alpha", "ser distill --teacher"):
        assert word in done.stdout


def test_a_folder_that_is_not_a_teacher_run_is_a_one_line_error(tmp_path):
    done = run("distill", "--teacher", str(tmp_path / "nope"), "--head", "linear", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "no trained folds" in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_quality_estimate_is_refused(tmp_path):
    (tmp_path / "teacher" / "fold0").mkdir(parents=True)
    done = run("distill", "--teacher", str(tmp_path / "teacher"), "--head", "linear", "--quality", "oracle",
               cwd=tmp_path)
    assert done.returncode == 2 and "unknown quality estimate 'oracle'" in done.stderr
