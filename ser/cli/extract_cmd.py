"""`ser extract --model M`: every hidden layer of every utterance into the HDF5 cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ser.cli import validation
from ser.cli.options import Device, ManifestPath, MemoryBudget, OutPath, Threads, Workdir

HELP = "Extract all hidden layers of a speech model (or fbank/mfcc) into cache/<corpus>/<model>.h5."
EXAMPLES = (
    "Examples:\n\n"
    "  ser extract --model fbank\n\n"
    "  ser extract --model wavlm-base --device cuda\n\n"
    "  ser extract --model ./models/wavlm-large --layers 0,12-24 --max-seconds 20\n\n"
    "  ser extract --model wavlm-base --random-init   # real architecture, random weights\n\n"
    "  torchrun --standalone --nproc-per-node 4 -m ser.cli extract --model wavlm-base --device cuda\n\n"
    "Interrupted runs resume: run the same command again (with any number of torchrun processes)."
)
SKIPPED_ROWS_SHOWN = 20


def _size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{num_bytes} B"
        num_bytes /= 1024
    return ""


def extract(
    model: Annotated[str, typer.Option("--model", help="Alias (`ser list models`), hub id, or local model folder.")],
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    out: OutPath = None,
    device: Device = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (fp16 autocast on GPU) | fp32 | fp16 | bf16.", callback=validation.precision)] = "auto",
    random_init: Annotated[bool, typer.Option("--random-init", help="Real architecture, random weights (benchmarks/tests).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching the model from the hub.")] = False,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Crop each utterance to this length.", callback=validation.positive_seconds)] = None,
    layers: Annotated[Optional[str], typer.Option("--layers", help="Keep only these hidden states, e.g. 0,4,8-12.")] = None,
    batch_seconds: Annotated[Optional[float], typer.Option("--batch-seconds", help="Padded audio per forward pass (default 20 CPU / 200 GPU).", callback=validation.positive_seconds)] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip (default: list them in <cache>.skipped.csv) | fail.")] = "skip",
    memory_budget: MemoryBudget = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing cache (kept until the new one is complete).")] = False,
    text: Annotated[bool, typer.Option("--text", help="Encode the manifest's transcripts with a text model instead.")] = False,
    threads: Threads = None,
) -> None:
    from ser.features.distributed import is_follower_rank, require_single_process
    from ser.training.threads import use_threads

    use_threads(threads)
    if text:
        from ser.data.text_extraction import run_text_extraction

        require_single_process("ser extract --text")
        result = run_text_extraction(workdir, model, manifest=manifest, out=out, random_init=random_init,
                                     allow_download=allow_download, device=device, overwrite=overwrite)
        print(f"text cache: {result.path} ({result.utterances} utterances encoded)")
        return
    from ser.data.extraction import extract_corpus

    summary = extract_corpus(
        workdir, model, manifest=manifest, out=out, device=device, precision=precision, random_init=random_init,
        allow_download=allow_download, max_seconds=max_seconds, layers=layers, batch_seconds=batch_seconds,
        on_error=on_error, overwrite=overwrite, show_progress=True, memory_budget=memory_budget,
    )
    if is_follower_rank():
        return  # under torchrun, rank 0 reports for every rank
    console = Console()
    if summary.skipped:
        table = Table(title=f"skipped {len(summary.skipped)} utterance(s)", show_header=True, header_style="bold")
        table.add_column("id")
        table.add_column("reason")
        for utt_id, reason in list(summary.skipped.items())[:SKIPPED_ROWS_SHOWN]:
            table.add_row(utt_id, reason)
        console.print(table)
        if summary.skipped_csv:
            console.print(f"all skipped utterances: {summary.skipped_csv}", soft_wrap=True)
    if summary.repaired:
        first = next(iter(summary.repaired.items()))
        console.print(f"repaired {len(summary.repaired)} damaged utterance(s) of the finished cache by extracting them "
                      f"again (e.g. {first[0]}: {first[1]})", soft_wrap=True, markup=False)
    if summary.already_complete:
        console.print(f"cache already complete: {summary.cache_path} ({summary.reused} utterances, "
                      f"{_size(summary.cache_bytes)}, every checksum verified); pass --overwrite to redo it",
                      soft_wrap=True)
        return
    speed = f", RTF {summary.real_time_factor:.3f} ({1 / summary.real_time_factor:.1f}× real time)" if summary.audio_seconds else ""
    console.print(
        f"extracted {summary.extracted}, resumed {summary.reused}, skipped {len(summary.skipped)} → "
        f"{summary.cache_path} ({_size(summary.cache_bytes)}){speed}", soft_wrap=True,
    )
