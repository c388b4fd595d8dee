"""The `ser` command line: every command parses options, makes one library call and prints.

Errors derived from `SerError` are printed as one line plus a hint on stderr (exit code 2);
set `SER_DEBUG=1` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from ser.cli import cache_cmd, demo_cmd, extract_cmd, folds_cmd, listing_cmd, prepare_cmd
from ser.cli import distill_cmd, export_cmd, finetune_cmd, predict_cmd, probe_cmd, report_cmd, sweep_cmd, train_cmd
from ser.cli import serve_cmd
from ser.cli.help_text import reflowed
from ser.cli.process_exit import exit_without_teardown
from ser.errors import SerError, os_failure

app = typer.Typer(
    name="ser",
    help="Speech emotion recognition from cached pre-trained speech representations.",
    epilog=reflowed("""Examples:

  ser demo                                       (the whole flow on the built-in synthetic corpus)

  ser prepare iemocap /corpora/IEMOCAP_full_release

  ser extract --model wavlm-base                 (every layer, once, into cache/<corpus>/wavlm-base.h5)

  ser train --head shiftcnn --fold all

  ser sweep --head shiftcnn,shiftlstm --shift-proportion 1/2,1/4,1/8,1/16 --seeds 0,1,2

  ser report runs/

  ser predict clip.wav --run runs/<corpus>/<model>/<run>   (apply a trained run to new audio)

  ser serve runs/<corpus>/<model>/<run>          (the model behind a URL, with a web page)

Each command's --help has more examples. Errors print one line and a hint; SER_DEBUG=1 shows tracebacks."""),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

def _print_version(asked: bool) -> None:
    """`ser --version`: the installed distribution's version, then exit."""
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"ser {version('ser')}")
        except PackageNotFoundError:
            print("ser (not installed: run `pip install -e .`)")
        raise typer.Exit()


@app.callback()
def _common(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version of ser and exit.")] = False,
) -> None:
    pass


def _command(name: str, module, function) -> None:
    """Register `ser NAME`: its help, its examples reflowed for the terminal, its function."""
    app.command(name, help=module.HELP, epilog=reflowed(module.EXAMPLES))(function)


_command("prepare", prepare_cmd, prepare_cmd.prepare)
_command("extract", extract_cmd, extract_cmd.extract)
_command("train", train_cmd, train_cmd.train)
_command("finetune", finetune_cmd, finetune_cmd.finetune)
_command("sweep", sweep_cmd, sweep_cmd.sweep)
_command("probe", probe_cmd, probe_cmd.probe)
_command("report", report_cmd, report_cmd.report)
_command("predict", predict_cmd, predict_cmd.predict)
_command("export", export_cmd, export_cmd.export)
_command("serve", serve_cmd, serve_cmd.serve)
_command("distill", distill_cmd, distill_cmd.distill)
_command("folds", folds_cmd, folds_cmd.folds)
_command("list", listing_cmd, listing_cmd.list_names)
_command("demo", demo_cmd, demo_cmd.demo)
app.add_typer(cache_cmd.cache_app, name="cache", help=cache_cmd.HELP)


def main() -> None:
    """Console-script entry point: usage errors the click way, `SerError`s as one line + hint."""
    from ser.training.allocator import keep_freed_blocks
    from ser.training.threads import prefer_brief_waits

    prefer_brief_waits()  # before any command imports torch (OpenMP reads it once)
    keep_freed_blocks()  # large tensors freed in one training step are reused by the next; forked workers inherit it
    try:
        app()  # standalone mode: click prints usage errors itself and exits with code 2
    except (SerError, OSError) as caught:
        error = caught if isinstance(caught, SerError) else os_failure(caught)
        if os.environ.get("SER_DEBUG") == "1" or error is None:
            raise
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))


def run() -> None:
    """The `ser` program: `main()`, then the process ends without tearing the interpreter down
    (cli/process_exit.py). Ctrl-C takes that fast exit too, with status 130: typer turns the
    KeyboardInterrupt into `Exit(130)`, a SystemExit like any other. Only a traceback (an error
    under SER_DEBUG=1, a bug) leaves the normal way, through the interpreter's teardown."""
    try:
        main()
    except SystemExit as exiting:
        exit_without_teardown(exiting.code)
    exit_without_teardown(0)


if __name__ == "__main__":
    run()
