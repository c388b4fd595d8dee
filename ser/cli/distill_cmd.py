"""`ser distill`: an audio-only student taught by a multimodal teacher run (reference §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli.options import Device, Epochs, ManifestPath, OutPath, Workdir
from ser.cli.train_cmd import ProgressBar, parse_head_options, print_results

HELP = "Train an audio-only student on a mix of ground truth and a teacher run's predictions."
EXAMPLES = """Examples:

  ser extract --model fbank && ser extract --text --model bert-base

  ser train --teacher --text-model bert-base --task dimensional --fold all

  ser distill --teacher runs/synthetic/fbank/teacher-bert-base-multimodal-dimensional-s0 --head shiftcnn

  ser distill --teacher RUN_DIR --head linear --quality none --alpha 0.5     (unconditioned ablation)

  ser distill --teacher RUN_DIR --head linear --unlabelled     (+ the teacher's labels of unrated utterances)

Per fold of the teacher's protocol, teachers with the teacher's configuration are cross-fitted on
the fold's training part (cached in RUN_DIR/fold<K>/crossfit/) so that every training utterance
gets a prediction from a teacher that never saw it; the student's target is
w·teacher + (1−w)·truth with w from --quality: none (w = alpha), heldout (per dimension, the
teacher's held-out CCC), mc-dropout (per utterance and dimension, the teacher's MC-dropout
spread; default), agreement (per utterance and dimension, |teacher − truth|). Categorical
teachers give soft labels at --soft-temperature. With --unlabelled, manifest rows that have audio
and a transcript but no target (e.g. no ratings) join the student's training part with the fold
teacher's prediction as target, unless their speaker or session is in the fold's test part."""


def distill(
    teacher: Annotated[Path, typer.Option("--teacher", help="Run directory of `ser train --teacher`.")],
    head: Annotated[str, typer.Option("--head", help="The student's head (see `ser list heads`).")],
    quality: Annotated[
        str, typer.Option("--quality", help="Teacher-quality estimate: mc-dropout | heldout | agreement | none.")
    ] = "mc-dropout",
    alpha: Annotated[float, typer.Option("--alpha", help="Largest weight of the teacher in the target.")] = 0.5,
    temperature: Annotated[float, typer.Option("--temperature", help="τ: how fast trust decays.")] = 1.0,
    soft_temperature: Annotated[
        float, typer.Option("--soft-temperature", help="T of categorical soft labels.")
    ] = 2.0,
    crossfit_parts: Annotated[int, typer.Option("--crossfit-parts", help="Cross-fitting parts.")] = 3,
    mc_samples: Annotated[int, typer.Option("--mc-samples", help="MC-dropout passes.")] = 10,
    unlabelled: Annotated[
        bool, typer.Option("--unlabelled", help="Also train on the teacher's labels of the manifest's unlabelled rows.")
    ] = False,
    fold: Annotated[str, typer.Option("--fold", help="all, or one fold of the teacher's protocol.")] = "all",
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Student seed (default: the teacher's).")] = None,
    epochs: Epochs = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default: recipe).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default: recipe).")] = None,
    head_option: Annotated[
        Optional[list[str]], typer.Option("--head-option", help="key=value for any head option (repeatable).")
    ] = None,
    device: Device = "auto",
    run_name: Annotated[Optional[str], typer.Option("--run-name", help="Run folder name (default from the options).")] = None,
    out: OutPath = None,
) -> None:
    from ser.distill.student import DistillConfig, run_distillation

    settings = DistillConfig(quality, alpha, temperature, soft_temperature, crossfit_parts, mc_samples, unlabelled)
    with ProgressBar() as progress:
        run_dir, results = run_distillation(
            workdir, teacher, head, settings, fold, parse_head_options(head_option or []), seed=seed,
            manifest=manifest, out=out, run_name=run_name, device=device, progress=progress,
            epochs=epochs, batch_size=batch_size, lr=lr,
        )
    print_results(results)
    print(f"run directory: {run_dir}")
