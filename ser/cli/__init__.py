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


app.command("prepare", help=prepare_cmd.HELP, epilog=reflowed(prepare_cmd.EXAMPLES))(prepare_cmd.prepare)
app.command("extract", help=extract_cmd.HELP, epilog=reflowed(extract_cmd.EXAMPLES))(extract_cmd.extract)
app.command("train", help=train_cmd.HELP, epilog=reflowed(train_cmd.EXAMPLES))(train_cmd.train)
app.command("finetune", help=finetune_cmd.HELP, epilog=reflowed(finetune_cmd.EXAMPLES))(finetune_cmd.finetune)
app.command("sweep", help=sweep_cmd.HELP, epilog=reflowed(sweep_cmd.EXAMPLES))(sweep_cmd.sweep)
app.command("probe", help=probe_cmd.HELP, epilog=reflowed(probe_cmd.EXAMPLES))(probe_cmd.probe)
app.command("report", help=report_cmd.HELP, epilog=reflowed(report_cmd.EXAMPLES))(report_cmd.report)
app.command("predict", help=predict_cmd.HELP, epilog=reflowed(predict_cmd.EXAMPLES))(predict_cmd.predict)
app.command("export", help=export_cmd.HELP, epilog=reflowed(export_cmd.EXAMPLES))(export_cmd.export)
app.command("serve", help=serve_cmd.HELP, epilog=reflowed(serve_cmd.EXAMPLES))(serve_cmd.serve)
app.command("distill", help=distill_cmd.HELP, epilog=reflowed(distill_cmd.EXAMPLES))(distill_cmd.distill)
app.command("folds", help=folds_cmd.HELP, epilog=reflowed(folds_cmd.EXAMPLES))(folds_cmd.folds)
app.command("list", help=listing_cmd.HELP, epilog=reflowed(listing_cmd.EXAMPLES))(listing_cmd.list_names)
app.command("demo", help=demo_cmd.HELP, epilog=reflowed(demo_cmd.EXAMPLES))(demo_cmd.demo)
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
