"""`ser export RUN_DIR --out DIR`: a self-contained model folder (safetensors, model card, ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = "Export a trained run as a self-contained model folder (safetensors weights, scaler, labels, model card)."
EXAMPLES = """Examples:

  ser export runs/synthetic/fbank/shiftcnn-s0 --out models/synthetic-shiftcnn

  ser export runs/iemocap/wavlm-base/shiftcnn-s0 --fold 1 --out models/ses01 --onnx

Then: ser predict clip.wav --model-dir models/synthetic-shiftcnn, or ser.load("models/synthetic-shiftcnn").
--onnx also writes <fold>.onnx (standardisation + head; inputs features (B, L, T, D) and lengths (B,),
which the graph clamps to [1, T]),
checked with onnxruntime against torch (needs `pip install 'ser\\[onnx]'`)."""


def export(
    run: Annotated[Path, typer.Argument(help="Run directory (or one fold folder) of `ser train`.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="The model folder to write.", show_default=False)],
    fold: Annotated[str, typer.Option("--fold", help="all | K (fold<K>) | a fold name.")] = "all",
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write each fold's head as ONNX (checked with onnxruntime).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export at --out (never a "
                                            "folder that `ser export` did not write).")] = False,
    include_backbone: Annotated[bool, typer.Option("--include-backbone", help="Copy the run's local backbone folder "
                                                   "in (hub backbones are referenced by id and revision).")] = False,
) -> None:
    from ser.inference.export import ONNX_TOLERANCE, export_model

    summary = export_model(run, out, fold, onnx=onnx, overwrite=overwrite, include_backbone=include_backbone)
    print(f"exported {len(summary.folds)} fold(s) ({', '.join(summary.folds)}) → {summary.folder}")
    for name, error in summary.onnx_max_error.items():
        print(f"{name}.onnx: max |onnxruntime − torch| = {error:.2e} (≤ {ONNX_TOLERANCE:g})")
