"""Option aliases shared by every command (huggingface_hub style `Annotated` reuse)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli import validation

Workdir = Annotated[
    Path,
    typer.Option(
        "--workdir",
        envvar="SER_WORKDIR",
        help="Workspace holding manifests/, cache/ and runs/ (default: current directory or $SER_WORKDIR).",
        show_default=False,
        callback=validation.workspace_folder,
    ),
]
ManifestPath = Annotated[
    Optional[Path],
    typer.Option("--manifest", help="Manifest CSV (default: the only one in <workdir>/manifests)."),
]
OutPath = Annotated[Optional[Path], typer.Option("--out", help="Output path (default: workspace convention).")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same numbers on CPU.",
                                    callback=validation.seed)]
FoldScheme = Annotated[
    Optional[str],
    typer.Option("--folds", help="Protocol: session | speaker | kfold | split | emobox:DIR (EmoBox folds; default: the corpus's own)."),
]
KFolds = Annotated[Optional[int], typer.Option("--k", help="Number of folds for --folds kfold.")]
DevSplit = Annotated[
    str,
    typer.Option("--dev", callback=validation.dev_split,
                 help="Dev split (20% of each fold's training part): auto (whole speakers where the training part "
                 "has at least 4, else random; config.json records which) | speaker | random (stratified rows)."),
]
RecordTestCurve = Annotated[
    bool,
    typer.Option("--record-test-curve", help="Score test at every epoch: history.csv's test columns and metrics.json's "
                 "test_best_epoch_optimistic (a max over test epochs, for comparison with papers only). By default "
                 "test is scored twice: at the dev-selected epoch and at the last."),
]
PerSpeaker = Annotated[
    bool,
    typer.Option("--per-speaker", help="z-score each speaker's features with that speaker's own mean and std first "
                 "(every speaker's, the test speakers' too, from their unlabelled audio: transductive). Needs the "
                 "manifest's speaker column; a run trained so cannot predict a new voice (ser predict refuses it)."),
]
Refit = Annotated[
    bool,
    typer.Option("--refit", help="After the epochs, train a fresh head on train + dev for the epochs that dev chose "
                 "and score that one on test, as ser probe refits with the C that dev chose (metrics.json keeps "
                 "the score before the refit as test_before_refit). Costs a second training per fold."),
]
FrequencyWarpOption = Annotated[
    float,
    typer.Option("--frequency-warp", help="Warp each training utterance's mel channels by a factor drawn from "
                 "[1 − A, 1 + A] per epoch, as another voice's formants would sit (fbank caches only; dev, test "
                 "and predict see the frames as cached). E.g. 0.1. Default 0: off."),
]
Epochs = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default: the head's paper recipe).")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")]
Threads = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, help="CPU threads (default: the CPUs this process may use — affinity and "
                 "cgroup quota; a waiting OpenMP thread spins ~10 µs, then sleeps)."),
]


def _check_log(value: Optional[str]) -> Optional[str]:
    if value is not None and value not in ("tensorboard", "mlflow"):
        raise typer.BadParameter(f"{value!r} is not a tracker: choose tensorboard or mlflow")
    return value


TrackingLog = Annotated[
    Optional[str],
    typer.Option("--log", callback=_check_log,
                 help="Record each fold's epochs, config and final metrics: tensorboard | mlflow (needs the tracking extra); off by default."),
]
MemoryBudget = Annotated[Optional[str], typer.Option(
    "--memory-budget", envvar="SER_MEMORY_BUDGET", show_default=False, callback=validation.memory_size,
    help="Memory one forward pass may use, e.g. 8GiB (default: 70% of available memory); a clip that needs "
         "more is skipped, with the --max-seconds that fits.")]
