"""`ser serve RUN_OR_EXPORT`: a trained model behind a URL (a page, /predict, /health)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import Device

HELP = "Serve a trained run or exported model over HTTP: a web page, POST /predict and GET /health."
EXAMPLES = """Examples:

  ser serve runs/synthetic/fbank/shiftcnn-s0                (then open http://127.0.0.1:8000/)

  ser serve models/synthetic-shiftcnn --port 9000 --max-seconds 120

  curl -F file=@clip.wav 'http://127.0.0.1:8000/predict?segments=true'

/predict answers with the rows `ser predict --out x.json` writes for that file ("predictions", and
"segments" with ?segments=true). The model is loaded once; requests are predicted one at a time
and queue. Too large or too long uploads get 413, unusable audio 422 with the reason. It listens on
127.0.0.1 unless --host says otherwise (there is no authentication). Needs `pip install 'ser\\[serve]'`."""


def serve(
    model: Annotated[Path, typer.Argument(help="Run directory (or fold folder) of `ser train`, or a folder of "
                                          "`ser export`.", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8000,
    fold: Annotated[str, typer.Option("--fold", help="all (average the folds) | K (fold<K>) | a fold name.")] = "all",
    backbone: Annotated[Optional[Path], typer.Option("--model", help="Local copy of the run's backbone.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload accepted (MiB).")] = 25.0,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Longest audio accepted (seconds).")] = 600.0,
    uncalibrated: Annotated[bool, typer.Option("--uncalibrated", help="Raw softmax, without the dev-fitted "
                                               "temperature.")] = False,
    min_confidence: Annotated[Optional[float], typer.Option("--min-confidence", help="Label `uncertain` below "
                                                            "this top probability.")] = None,
    device: Device = "auto",
) -> None:
    for name, value in (("--max-upload-mb", max_upload_mb), ("--max-seconds", max_seconds)):
        if not value > 0:
            raise typer.BadParameter(f"must be positive, not {value}", param_hint=name)
    from ser.inference.serve import ServeLimits, serve as serve_model

    serve_model(model, host, port, fold, ServeLimits(int(max_upload_mb * 2**20), max_seconds),
                model_dir=backbone, device=device, calibrated=not uncalibrated, min_confidence=min_confidence)
