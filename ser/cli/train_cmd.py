"""`ser train`: train a head on cached features, one fold or the whole protocol."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli import validation
from ser.cli.options import (Device, DevSplit, Epochs, FoldScheme, FrequencyWarpOption, KFolds, ManifestPath,
                             OutPath, PerSpeaker, RecordTestCurve, Refit, Seed, Threads, TrackingLog, Workdir)
from ser.errors import UserInputError
from ser.features.layer_spec import read_layer_spec

HELP = "Train a head on a feature cache (paper recipe per head family; resumes interrupted runs)."
EXAMPLES = """Examples:

  ser train --head shiftcnn --fold all

  ser train --head shiftcnn --fold all --jobs 2   (two folds at a time, one CPU thread each)

  ser train --head shiftcnn --fold 1 --model wavlm-base --epochs 30 --seed 1

  ser train --head shiftcnn --fold none   (every labelled utterance; runs/…/<run>-full/full/, no test metrics)

  ser train --head shiftlstm --shift-proportion 1/8 --shift-placement inplace --layers 8-12

  ser train --head shiftcnn --no-standardize --head-option spec_augment=true --head-option input_projection=false
      (override the fbank/mfcc defaults)

  ser train --head shiftcnn --per-speaker   (each speaker's features z-scored by its own statistics;
      compare with `ser probe --per-speaker`)

  ser train --head shiftcnn --refit   (then a fresh head on train + dev for the epochs dev chose,
      as `ser probe` refits: its test score beside the one before the refit)

  ser train --head shiftcnn --model fbank --frequency-warp 0.1   (each training clip's mel channels
      warped by 0.9-1.1, as another voice's would be)

  ser train --head cnn --head-option num_blocks=3 --head-option kernel_size=5 --run-name cnn3

  ser train --head shiftcnn --task dimensional   (arousal/valence/dominance, 1 − CCC loss)

  ser train --head shiftcnn --log tensorboard   (then: tensorboard --logdir runs/)

  ser train --teacher --text-model bert-base --task dimensional   (after `ser extract --text --model bert-base`)

  ser train --head shiftcnn --manifest manifests/iemocap.csv --test-manifest manifests/emodb.csv
  --label-map "happiness=happy,anger=angry,sadness=sad,boredom=,disgust=,fear="
  (cross-corpus: train + dev on iemocap, test on every usable emodb row; needs cache/emodb/<model>.h5)

Results go to <workdir>/runs/<corpus>/<model>/<run-name>/fold<K>/ (metrics.json, history.csv,
predictions.csv, layer_weights.json, model.pt); --fold all adds summary.json (mean ± std).
Rerunning the same command resumes an interrupted run and skips finished folds."""


def warn_schedule(recipe) -> None:
    """Print the recipe's schedule warning (e.g. --epochs inside the warm-up) to stderr."""
    message = recipe.schedule_warning()
    if message:
        print(f"warning: {message}", file=sys.stderr)


def parse_layers(text: str) -> list[int]:
    """`0,4,8-12` → [0, 4, 8, 9, 10, 11, 12]; each cache layer at most once."""
    layers = read_layer_spec(text)
    if len(set(layers)) != len(layers):
        raise UserInputError(f"--layers {text!r} repeats a layer", "write it like 0,4,8-12")
    return layers


def parse_head_options(texts: list[str]) -> dict:
    """`key=value` pairs; values read as YAML scalars/lists (3 → int, 0.1 → float, true → bool)."""
    import yaml

    options = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"bad --head-option {text!r}", "write it as key=value, e.g. num_blocks=3")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as error:
            from ser.studies.grid import yaml_problem

            raise UserInputError(f"bad --head-option {text!r}: {yaml_problem(error)}",
                                 "write the value as a number, true/false, a word or a list like [1, 2]") from None
        validation.head_option_value(key.strip().replace("-", "_"), options[key.strip().replace("-", "_")])
    return options


def parse_label_map(text: str | None) -> dict[str, str | None] | None:
    """`joy=happy,fear=` → {"joy": "happy", "fear": None} (an empty target drops that label's rows)."""
    if text is None:
        return None
    label_map: dict[str, str | None] = {}
    for pair in (p.strip() for p in text.split(",") if p.strip()):
        source, sep, target = (part.strip() for part in pair.partition("="))
        if not sep or not source or source in label_map:
            raise UserInputError(f"cannot read --label-map {text!r} at {pair!r}",
                                 "write it like joy=happy,fear= (test label=training label; empty drops the label)")
        label_map[source] = target or None
    return label_map


TestManifest = Annotated[
    Optional[Path], typer.Option("--test-manifest", help="Cross-corpus: train (and dev) on the workspace's manifest, "
                                 "test on every usable row of this one (its cache: cache/<its corpus>/<model>.h5).")
]
LabelMap = Annotated[
    Optional[str], typer.Option("--label-map", help="Test labels → training labels, e.g. joy=happy,fear= "
                                "(empty target: drop). Unmapped test labels the training corpus lacks are refused.")
]


def train(
    head: Annotated[
        Optional[str], typer.Option("--head", help="Head name (see `ser list heads`); with --teacher: multimodal.")
    ] = None,
    fold: Annotated[str, typer.Option("--fold", help="all, a fold number K (as in fold<K>, from 1), a fold name, or none "
                                        "(train on every labelled utterance, dev for the epoch, no test: the model to deploy).")] = "all",
    model: Annotated[Optional[str], typer.Option("--model", help="Cache model (default: the only cache).")] = None,
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    seed: Seed = 0,
    epochs: Epochs = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default: recipe).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default: recipe).", callback=validation.learning_rate)] = None,
    device: Device = "auto",
    folds: FoldScheme = None,
    k: KFolds = None,
    dev: DevSplit = "auto",
    layers: Annotated[Optional[str], typer.Option("--layers", help="Cache layers to use, e.g. 0,4,8-12 (default all).")] = None,
    shift_proportion: Annotated[
        Optional[str], typer.Option("--shift-proportion", help="Shifted channels PER DIRECTION: 1/2, 1/4, 1/8, 1/16.")
    ] = None,
    shift_placement: Annotated[
        Optional[str], typer.Option("--shift-placement", help="residual | tsm-residual | inplace | replacement | none.")
    ] = None,
    shift_bidirectional: Annotated[
        Optional[bool], typer.Option("--shift-bidirectional/--no-shift-bidirectional", help="Also advance a group.")
    ] = None,
    shift_stride: Annotated[Optional[int], typer.Option("--shift-stride", help="Frames per shift.")] = None,
    head_option: Annotated[
        Optional[list[str]], typer.Option("--head-option", help="key=value for any other head option (repeatable).")
    ] = None,
    standardize: Annotated[
        Optional[bool], typer.Option("--standardize/--no-standardize", help="z-score features per layer and channel "
                                     "with each fold's training statistics (default: on for fbank/mfcc/eGeMAPS/ComParE "
                                     "caches, off for pre-trained models' caches).", show_default=False)
    ] = None,
    per_speaker: PerSpeaker = False,
    refit: Refit = False,
    frequency_warp: FrequencyWarpOption = 0.0,
    record_test_curve: RecordTestCurve = False,
    task: Annotated[
        str, typer.Option("--task", help="What to learn: categorical (the manifest's label) | dimensional "
                          "(its arousal, valence, dominance; 1 − CCC loss).")
    ] = "categorical",
    teacher: Annotated[
        bool, typer.Option("--teacher", help="Train the multimodal teacher on the audio cache + the text cache "
                           "of --text-model (for `ser distill`).")
    ] = False,
    text_model: Annotated[
        Optional[str], typer.Option("--text-model", help="Text cache model of --teacher (as given to `ser extract --text`).")
    ] = None,
    stream: Annotated[
        Optional[bool], typer.Option("--stream/--in-memory", help="Read the cache from disk each batch, a producer "
                                     "thread ahead of the loop (default: auto, above 80% of the available RAM).")
    ] = None,
    eval_every_updates: Annotated[
        Optional[int], typer.Option("--eval-every-updates", min=0, help="Score dev after the epoch holding every "
                                    "N-th update, and the last (default: recipe; linear 1000 as s3prl; 0: every epoch).")
    ] = None,
    test_manifest: TestManifest = None,
    label_map: LabelMap = None,
    run_name: Annotated[Optional[str], typer.Option("--run-name", help="Run folder name (default from the options).")] = None,
    out: OutPath = None,
    log: TrackingLog = None,
    threads: Threads = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Folds trained side by side in forked worker processes "
                                      "of one thread each, as `--threads 1` trains them (CPU, cache in memory).")] = 1,
) -> None:
    from ser.training.config import TrainConfig
    from ser.training.run import run_training
    from ser.distill.teacher import TEACHER_HEAD, run_teacher_training
    from ser.training.threads import use_threads

    if teacher and not text_model:
        raise UserInputError("--teacher needs --text-model", "e.g. --teacher --text-model bert-base")
    if text_model and not teacher:
        raise UserInputError("--text-model is only used by --teacher", "add --teacher, or drop --text-model")
    if teacher and stream:
        raise UserInputError("--stream is not available with --teacher", "the teacher keeps both caches in memory")
    if teacher and log is not None:
        raise UserInputError("--log is not available with --teacher yet", "track plain `ser train` or `ser sweep` runs")
    if teacher and test_manifest is not None:
        raise UserInputError("--test-manifest is not available with --teacher")
    if teacher and per_speaker:
        raise UserInputError("--per-speaker is not available with --teacher", "train the teacher without it")
    if teacher and refit:
        raise UserInputError("--refit is not available with --teacher", "train the teacher without it")
    if head is None and not teacher:
        raise UserInputError("missing option --head", "choose one with `ser list heads`, e.g. --head shiftcnn")
    if jobs > 1 and teacher:
        raise UserInputError("--jobs is not available with --teacher", "train the teacher's folds with --jobs 1")
    if jobs > 1 and stream:
        raise UserInputError(f"--jobs {jobs} needs the cache in memory: its workers are forked with it",
                             "drop --stream, or use --jobs 1")
    if jobs > 1 and threads is not None and threads > 1:
        raise UserInputError(f"--jobs {jobs} trains each fold on one thread, not --threads {threads}",
                             "drop --threads, or use --jobs 1 --threads N")
    head = head or TEACHER_HEAD
    use_threads(1 if jobs > 1 else threads)
    head_kwargs = {
        "shift_proportion": shift_proportion,
        "shift_placement": shift_placement,
        "shift_bidirectional": shift_bidirectional,
        "shift_stride": shift_stride,
        **parse_head_options(head_option or []),
    }
    config = TrainConfig.create(
        head, head_kwargs, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, task=task,
        eval_every_updates=eval_every_updates,
        layers=parse_layers(layers) if layers else None, folds=folds, k=k, dev=dev,
        standardize=standardize, per_speaker=per_speaker, refit=refit, frequency_warp=frequency_warp,
        record_test_curve=record_test_curve,
        test_manifest=None if test_manifest is None else str(test_manifest), label_map=parse_label_map(label_map),
    )
    warn_schedule(config.recipe)
    with ProgressBar() as progress:
        if teacher:
            run_dir, results = run_teacher_training(
                workdir, config, text_model, fold, manifest=manifest, model=model, out=out, run_name=run_name,
                device=device, progress=progress,
            )
        else:
            run_dir, results = run_training(
                workdir, config, fold, manifest=manifest, model=model, out=out, run_name=run_name, device=device,
                stream=stream, progress=progress, log=log, jobs=jobs,
            )
    print_results(results)
    print(f"run directory: {run_dir}")


PLAIN_PROGRESS_SECONDS = 10.0


class ProgressBar:
    """A rich progress bar over epochs when stdout is a terminal; otherwise (a log file, a pipe, a
    batch job) one plain line per epoch, at most one every 10 s besides each fold's last epoch."""

    def __enter__(self):
        if not sys.stdout.isatty():
            self.last_line = -float("inf")
            return self.plain_line
        from rich.progress import Progress

        self.bar = Progress(*Progress.get_default_columns(), "{task.fields[status]}", transient=True)
        self.bar.__enter__()
        self.tasks: dict[str, int] = {}
        return self.update

    def update(self, fold: str, epoch: int, total: int, row: dict) -> None:
        if fold not in self.tasks:
            self.tasks[fold] = self.bar.add_task(f"fold {fold}", total=total, status="")
        scores = "  ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("dev_") and k != "dev_loss")
        self.bar.update(self.tasks[fold], completed=epoch, status=scores)

    def plain_line(self, fold: str, epoch: int, total: int, row: dict) -> None:
        now = time.monotonic()
        if now - self.last_line < PLAIN_PROGRESS_SECONDS and epoch < total:
            return
        self.last_line = now
        scores = "  ".join(f"{k} {v:.3f}" for k, v in row.items() if k.endswith("train_loss") or
                           (k.startswith("dev_") and k != "dev_loss"))
        seconds = next((value for name, value in row.items() if name.endswith("seconds")), 0.0)  # refit_seconds too
        print(f"fold {fold}  epoch {epoch}/{total}  {scores}  ({seconds:.1f} s/epoch)", flush=True)

    def __exit__(self, *exc) -> None:
        if hasattr(self, "bar"):
            self.bar.__exit__(*exc)


def print_results(results: dict[str, dict]) -> None:
    """A table of the per-fold test metrics (at the dev-selected epoch) and their mean ± sample std."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    if all(metrics["test"] is None for metrics in results.values()):  # --fold none
        for fold, metrics in results.items():
            scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics["dev"].items() if isinstance(v, float))
            print(f"{fold}: no test set; dev at the selected epoch {metrics['best_epoch']}: {scores}")
        return
    first = next(iter(results.values()))["test"]
    names = [name for name, value in first.items() if isinstance(value, (int, float))]
    refit = all(isinstance(metrics.get("test_before_refit"), dict) for metrics in results.values())
    title = "test metrics of the head refitted on train + dev" if refit else "test metrics at the dev-selected epoch"
    table = Table(title=title, header_style="bold")
    before = [f"{names[0]} before refit"] if refit else []  # the dev-selected weights, trained on train only
    for column in ("fold", "best epoch", *names, *before):
        table.add_column(column, justify="left" if column == "fold" else "right")
    columns = [("test", name) for name in names] + [("test_before_refit", names[0])] * bool(refit)
    for fold, metrics in results.items():
        table.add_row(fold, str(metrics["best_epoch"]), *(f"{metrics[part][name]:.4f}" for part, name in columns))
    if len(results) > 1:
        values = [np.array([m[part][name] for m in results.values()]) for part, name in columns]
        table.add_row("mean ± std", "", *(f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" for v in values))
    Console(width=max(100, Console().width)).print(table)
