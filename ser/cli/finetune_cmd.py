"""`ser finetune`: train the backbone's transformer together with a head, from raw audio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import (Device, DevSplit, Epochs, FoldScheme, KFolds, ManifestPath, OutPath, RecordTestCurve,
                             Seed, TrackingLog, Workdir)
from ser.cli.train_cmd import ProgressBar, parse_head_options, print_results

HELP = "Fine-tune a speech model (CNN frozen, transformer trained) with a head on top, from the manifest's audio."
EXAMPLES = """Examples:

  ser finetune --model wav2vec2-base --head shiftcnn --fold all

  ser finetune --model ./wavlm-base --head shiftformer --fold 1 --conv-cache --precision bf16 --gradient-checkpointing

  ser finetune --model wav2vec2-base --head shiftlstm --schedule reference --backbone-lr 5e-4 --head-option layers=-1
  (parity with the reference: its schedule advanced once per epoch, one learning rate, last layer only)

  ser finetune --model hubert-base --head linear --freeze-layers 8 --lr 1e-3 --epochs 20

Paper recipe (ShiftSER): Adam, head lr 5e-4, warm-up 5 epochs / flat 5 / linear decay, batch 32,
100 epochs, clip 5, LayerDrop 0.05, audio cut to 7.5 s. The default --schedule step advances it
per optimiser step and gives the backbone --backbone-lr 5e-5. Group-norm models (the base ones)
never see padding: batches are cut to their shortest member (--batching crop) or accumulated one
utterance at a time (--batching accumulate); --conv-cache caches the frozen CNN output once
(cache/<corpus>/conv/) and then pads safely. Results go to
<workdir>/runs/<corpus>/<model>/<run-name>/fold<K>/ with the tuned encoder in backbone/.
Rerunning the same command resumes an interrupted run and skips finished folds."""


def finetune(
    model: Annotated[str, typer.Option("--model", help="Alias, hub id or local folder of a wav2vec2/HuBERT/WavLM/data2vec model.")],
    head: Annotated[str, typer.Option("--head", help="Head name (see `ser list heads`).")],
    fold: Annotated[str, typer.Option("--fold", help="all, a fold number K (as in fold<K>, from 1) or a fold name.")] = "all",
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    seed: Seed = 0,
    epochs: Epochs = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Utterances per optimiser step (default 32).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Head's peak learning rate (default 5e-4).")] = None,
    backbone_lr: Annotated[Optional[float], typer.Option("--backbone-lr", help="Transformer's peak learning rate (default 5e-5).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="On weight matrices (default 0).")] = None,
    warmup_epochs: Annotated[Optional[int], typer.Option("--warmup-epochs", help="Warm-up (and flat) epochs (default 5).")] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="step (per optimiser step) | reference (per epoch, as the reference code) | constant.")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="adam | adamw (default adam).")] = None,
    grad_clip: Annotated[Optional[float], typer.Option("--grad-clip", help="Gradient norm clip (default 5).")] = None,
    layerdrop: Annotated[Optional[float], typer.Option("--layerdrop", help="LayerDrop probability in training (default 0.05).")] = None,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Cut audio to this many seconds (default 7.5).")] = None,
    freeze_layers: Annotated[int, typer.Option("--freeze-layers", help="Also freeze the bottom N transformer layers (and the input projection).")] = 0,
    batching: Annotated[str, typer.Option("--batching", help="auto | crop | accumulate | pad (pad only where padding is safe).")] = "auto",
    conv_cache: Annotated[bool, typer.Option("--conv-cache/--raw-audio", help="Train from the cached frozen CNN output.")] = False,
    precision: Annotated[str, typer.Option("--precision", help="fp32 | bf16 (autocast; for GPUs).")] = "fp32",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Recompute transformer layers in backward (saves GPU memory).")] = False,
    random_init: Annotated[bool, typer.Option("--random-init", help="The real architecture with random weights (benchmarks).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching the model from the hub.")] = False,
    shift_proportion: Annotated[Optional[str], typer.Option("--shift-proportion", help="Shifted channels PER DIRECTION: 1/2, 1/4, 1/8, 1/16.")] = None,
    shift_placement: Annotated[Optional[str], typer.Option("--shift-placement", help="residual | tsm-residual | inplace | replacement | none.")] = None,
    shift_bidirectional: Annotated[Optional[bool], typer.Option("--shift-bidirectional/--no-shift-bidirectional", help="Also advance a group.")] = None,
    shift_stride: Annotated[Optional[int], typer.Option("--shift-stride", help="Frames per shift.")] = None,
    head_option: Annotated[Optional[list[str]], typer.Option("--head-option", help="key=value for any other head option (repeatable).")] = None,
    task: Annotated[str, typer.Option("--task", help="categorical | dimensional.")] = "categorical",
    device: Device = "auto",
    folds: FoldScheme = None,
    k: KFolds = None,
    dev: DevSplit = "auto",
    record_test_curve: RecordTestCurve = False,
    dev_fraction: Annotated[float, typer.Option("--dev-fraction", help="Share of the training part held out for dev.")] = 0.2,
    run_name: Annotated[Optional[str], typer.Option("--run-name", help="Run folder name (default from the options).")] = None,
    out: OutPath = None,
    log: TrackingLog = None,
) -> None:
    from ser.finetune.config import FinetuneConfig
    from ser.finetune.run import run_finetune

    head_kwargs = {"shift_proportion": shift_proportion, "shift_placement": shift_placement,
                   "shift_bidirectional": shift_bidirectional, "shift_stride": shift_stride,
                   **parse_head_options(head_option or [])}
    config = FinetuneConfig.create(
        model, head, head_kwargs, epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr=backbone_lr,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, schedule=schedule, optimizer=optimizer,
        grad_clip=grad_clip, layerdrop=layerdrop, max_seconds=max_seconds, freeze_layers=freeze_layers,
        batching=batching, conv_cache=conv_cache, precision=precision, gradient_checkpointing=gradient_checkpointing,
        random_init=random_init, seed=seed, task=task, folds=folds, k=k, dev=dev, dev_fraction=dev_fraction,
        record_test_curve=record_test_curve,
    )
    with ProgressBar() as progress:
        run_dir, results = run_finetune(workdir, config, fold, manifest=manifest, out=out, run_name=run_name,
                                        device=device, allow_download=allow_download, progress=progress,
                                        show_progress=sys.stdout.isatty(), log=log)
    print_results(results)
    print(f"run directory: {run_dir}")
