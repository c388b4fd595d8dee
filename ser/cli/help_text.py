"""Epilogs of `--help` as the terminal can wrap them."""

from __future__ import annotations


def reflowed(epilog: str) -> str:
    """Each prose paragraph (blank-line separated, no indented line) joined into one line, for rich
    to wrap at the terminal's width: its hard line breaks left an 80-column terminal a ragged
    column of half-empty lines. Paragraphs with an indented line (commands) stay as written.

    The leading newline keeps the commands' indent: typer dedents an epilog's lines after the first
    by their common indent (inspect.cleandoc), which an epilog of only commands loses otherwise."""
    paragraphs = epilog.split("\n\n")
    return "\n" + "\n\n".join(paragraph if any(line.startswith(" ") for line in paragraph.splitlines())
                       else " ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)
