"""`python -m ser.cli` runs the command line."""

from ser.cli import run

run()
