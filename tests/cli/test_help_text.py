"""`--help` epilogs: prose wraps at the terminal's width, commands stay as written."""

from __future__ import annotations

import os
import subprocess
import sys

from ser.cli.help_text import reflowed


def test_prose_paragraphs_become_one_line_and_command_paragraphs_stay():
    epilog = "Examples:\n\n  ser train --head cnn\n  ser report runs/\n\nRerunning resumes an\ninterrupted run."
    commands = "Examples:\n\n  ser train --head cnn\n  ser report runs/"
    assert reflowed(epilog) == "\n" + commands + "\n\nRerunning resumes an interrupted run."


def test_a_wide_terminal_gets_each_paragraph_of_prose_unbroken():
    """`ser predict --help` broke its prose where the source file breaks its lines: on 80 columns every
    other line was a few words long."""
    env = dict(os.environ, COLUMNS="200", TERM="dumb")
    shown = subprocess.run([sys.executable, "-m", "ser.cli", "predict", "--help"], capture_output=True, text=True,
                           env=env, timeout=120).stdout
    line = next(line for line in shown.splitlines() if "The backbone is the one recorded" in line)
    assert "fails at once with the command that fetches it. Files longer than the run's training clips" in line, shown
    assert "  ser predict clip.wav --run RUN --min-confidence 0.6   (below 0.6" in shown  # examples as written


def test_an_epilog_of_commands_only_keeps_their_indent():
    """`ser list --help` and `ser cache info --help` printed their examples flush left, unlike the
    other commands: typer dedents an epilog's lines after the first."""
    env = dict(os.environ, COLUMNS="100", TERM="dumb")
    for command in (["list"], ["cache", "info"]):
        shown = subprocess.run([sys.executable, "-m", "ser.cli", *command, "--help"], capture_output=True, text=True,
                               env=env, timeout=120).stdout
        examples = [line for line in shown.splitlines() if line.strip().startswith("ser ")]
        assert examples and all(line.startswith("   ser ") for line in examples), shown
