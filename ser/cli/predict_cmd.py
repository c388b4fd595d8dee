"""`ser predict INPUT… --run RUN_DIR`: apply a trained run (or an exported model) to new audio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import Device, MemoryBudget
from ser.errors import UserInputError

HELP = "Predict emotions of audio files, folders or a manifest with a trained run or an exported model."
EXAMPLES = """Examples:

  ser predict clip.wav --run runs/synthetic/fbank/shiftcnn-s0

  ser predict recordings/ --run runs/iemocap/wavlm-base/shiftcnn-s0 --fold all --out predictions.csv

  ser predict manifests/new.csv --model-dir exported/ --out predictions.json

  ser predict talk.wav --run RUN --segments --out talk.csv   (also talk.segments.csv: emotion over time)

  ser predict talk.wav --run RUN --segments --plot plots/   (plots/talk.png: emotion over time)

  ser predict clip.wav --run RUN --min-confidence 0.6   (below 0.6 the label is `uncertain`)

  ser predict clip.wav --run RUN --model ./wavlm-base   (a local copy of the run's backbone)

The backbone is the one recorded with the run, loaded offline; a missing one fails at once with
the command that fetches it. Files longer than the run's training clips are cut into windows
(--window, --hop); --fold all averages the folds' probabilities. Probabilities are calibrated
with each fold's temperature (fitted on its dev split); --uncalibrated gives the raw softmax.
Unusable files are skipped with the reason on stderr."""


def predict(
    inputs: Annotated[list[str], typer.Argument(help="Audio files, folders (searched recursively) or manifest CSVs.",
                                                show_default=False)],
    run: Annotated[Optional[Path], typer.Option("--run", help="Run directory (or one fold folder) of `ser train`.")] = None,
    model_dir: Annotated[Optional[Path], typer.Option("--model-dir", help="A folder written by `ser export`.")] = None,
    fold: Annotated[str, typer.Option("--fold", help="all (average the folds) | K (fold<K>) | a fold name.")] = "all",
    model: Annotated[Optional[Path], typer.Option("--model", help="Local copy of the run's backbone (a model folder).")] = None,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching the backbone from the hub.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the table here (.csv or .json) instead of printing it.")] = None,
    segments: Annotated[bool, typer.Option("--segments", help="Also give one row per window (start, end, label).")] = False,
    windows: Annotated[bool, typer.Option("--windows/--no-windows", help="Cut long files into windows (default), "
                                          "or crop them at the run's --max-seconds as `ser extract` does.")] = True,
    window: Annotated[Optional[float], typer.Option("--window", help="Window length in seconds (default: the run's "
                                                    "longest training clip).")] = None,
    hop: Annotated[Optional[float], typer.Option("--hop", help="Seconds between window starts (default: half a window).")] = None,
    device: Device = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (fp16 autocast on GPU) | fp32 | fp16 | bf16.")] = "auto",
    batch_seconds: Annotated[Optional[float], typer.Option("--batch-seconds", help="Padded audio per forward pass.")] = None,
    memory_budget: MemoryBudget = None,
    uncalibrated: Annotated[bool, typer.Option("--uncalibrated", help="Raw softmax probabilities, without the "
                                               "temperature fitted on dev.")] = False,
    min_confidence: Annotated[Optional[float], typer.Option("--min-confidence", help="Label a clip (or window) "
                                                            "`uncertain` when its top probability is below this.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write one PNG per input into this folder: "
                                                 "the windows' probabilities over time.")] = None,
) -> None:
    if (run is None) == (model_dir is None):
        raise typer.BadParameter("pass exactly one of --run RUN_DIR and --model-dir DIR", param_hint="--run")
    for name, value in (("--window", window), ("--hop", hop), ("--batch-seconds", batch_seconds)):
        if value is not None and not value > 0:
            raise typer.BadParameter(f"must be positive, not {value}", param_hint=name)
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise typer.BadParameter(f"must be between 0 and 1, not {min_confidence}", param_hint="--min-confidence")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise typer.BadParameter(f"{out} must end in .csv or .json", param_hint="--out")
    from ser.inference.predict import output_paths, predict_inputs, save_result

    input_files = {Path(given).resolve() for given in inputs if Path(given).is_file()}
    for path in output_paths(out, segments) if out is not None else []:
        if path.resolve() in input_files:
            raise typer.BadParameter(f"{path} is one of the inputs: writing there would replace it",
                                     param_hint="--out")

    result = predict_inputs(
        run or model_dir, inputs, fold, show_progress=sys.stderr.isatty() and (len(inputs) > 1 or Path(inputs[0]).is_dir()),
        model_dir=model, allow_download=allow_download, device=device, precision=precision, windows=windows,
        window=window, hop=hop, batch_seconds=batch_seconds, memory_budget=memory_budget, calibrated=not uncalibrated,
        min_confidence=min_confidence,
    )
    for input_id, reason in result.skipped.items():
        print(f"skipped {input_id}: {reason}", file=sys.stderr)
    if result.table.empty:
        raise UserInputError(f"none of the {len(result.skipped)} input(s) could be predicted", "see the reasons above")
    if plot is not None:
        from ser.inference.timeline_plot import plot_timelines

        for path in plot_timelines(result.segments, plot):
            print(f"wrote {path}")
    if out is not None:
        for path in save_result(result, out, segments):
            print(f"wrote {path}")
        return
    _print_table(result.table, "predictions")
    if segments:
        _print_table(result.segments, "windows")


def _print_table(table, title: str) -> None:
    import numbers

    from rich.console import Console
    from rich.table import Table

    cells = [[f"{value:.3f}" if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
              else str(value) for column, value in row.items() if column != "path"] for _, row in table.iterrows()]
    headers = [column for column in table.columns if column != "path"]
    console = Console(width=max(100, Console().width))
    view = Table(title=title, header_style="bold")
    for column in headers:
        view.add_column(column, justify="left" if column in ("id", "prediction") else "right")
    # the id (first) takes the width the other columns leave, and folds onto more lines beyond it: cut
    # at the end, the files of one folder would all read alike
    others = sum(max([len(header), *(len(row[i]) for row in cells)]) + 3 for i, header in enumerate(headers) if i)
    longest_id = max((len(row[0]) for row in cells), default=0)
    view.columns[0].overflow = "fold"
    view.columns[0].min_width = max(8, min(longest_id, console.width - others - 4))
    for row in cells:
        view.add_row(*row)
    console.print(view)
