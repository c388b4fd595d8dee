"""`ser sweep`: train a grid of configurations × folds × seeds on one loaded copy of the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli import validation
from ser.cli.options import Device, FoldScheme, KFolds, ManifestPath, OutPath, Workdir
from ser.cli.train_cmd import LabelMap, TestManifest

HELP = "Train a grid of heads/options × folds × seeds concurrently on one loaded cache (restartable)."
EXAMPLES = """Examples:

  ser sweep --head shiftcnn,shiftlstm,shiftformer --shift-proportion 1/2,1/4,1/8,1/16
  --shift-placement residual,inplace --fold all --seeds 0,1,2

  ser sweep --grid scripts/grids/shiftser.yaml --jobs 4 --device cuda

  ser sweep --head cnn --head-option num_blocks=1,2,3 --epochs 30 --fold 1

  ser sweep --head shiftcnn,cnn --seeds 0,1,2 --test-manifest manifests/emodb.csv --label-map happiness=happy
  (cross-corpus: one fold, runs under runs/<corpus>/<model>/sweep-x<test corpus>/)

Every option takes several values (comma-separated or repeated); the sweep trains every
combination. A grid file (.yaml/.toml) uses the same names (head, shift_proportion, seeds, fold,
head_options: {...}); command-line values replace the file's. Runs go to
<workdir>/runs/<corpus>/<model>/sweep/<run-name>/fold<K>/ (or --out); sweep.csv has one row per
run × fold and sweep_summary.csv the mean ± std per configuration. Rerun the same command after
an interruption: finished runs are skipped, interrupted ones resume. Then: ser report <sweep dir>."""

def _values(flag: str, text: str, callback=None):
    """A repeatable option whose values may also be comma-separated (each value one grid axis point)."""
    return Annotated[Optional[list[str]], typer.Option(flag, help=text, callback=callback)]


Heads = _values("--head", "Head names, e.g. shiftcnn,shiftlstm (see `ser list heads`).")
Proportions = _values("--shift-proportion", "Shifted channels PER DIRECTION: 1/2,1/4,1/8,1/16.")
Placements = _values("--shift-placement", "residual, tsm-residual, inplace, replacement, none.")
Bidirectional = _values("--shift-bidirectional", "true,false.")
Strides = _values("--shift-stride", "Frames per shift.")
Seeds = _values("--seeds", "Training seeds, e.g. 0,1,2 (default 0).", validation.seeds)
EpochValues = _values("--epochs", "Training epochs (default: each head's paper recipe).")
Rates = _values("--lr", "Peak learning rates (default: recipe).", validation.learning_rates)
BatchSizes = _values("--batch-size", "Batch sizes (default: recipe).")
Standardize = _values("--standardize", "true,false: z-score features with each fold's training statistics.")
HeadOptions = _values("--head-option", "key=v1,v2 for any other head option (repeatable).")
FoldsToRun = _values("--fold", "all (default), or fold numbers (1-based, as in fold<K>) or names, e.g. 1,2.")
GridFile = Annotated[Optional[Path], typer.Option("--grid", help="YAML or TOML grid file.")]
Model = Annotated[Optional[str], typer.Option("--model", help="Cache model (default: the only cache).")]
Jobs = Annotated[Optional[int], typer.Option("--jobs", help="Concurrent runs (default: CPU cores, or 4 on a GPU).")]
Threads = Annotated[int, typer.Option("--threads", help="Intra-op threads per run (results depend on it).")]
DevSplit = Annotated[str, typer.Option("--dev", help="Dev split: random | speaker.")]
Layers = Annotated[Optional[str], typer.Option("--layers", help="Cache layers, e.g. 0,4,8-12 (default all).")]
Task = Annotated[str, typer.Option("--task", help="What to learn: categorical (the manifest's label).")]


def sweep(
    head: Heads = None,
    shift_proportion: Proportions = None,
    shift_placement: Placements = None,
    shift_bidirectional: Bidirectional = None,
    shift_stride: Strides = None,
    seeds: Seeds = None,
    epochs: EpochValues = None,
    lr: Rates = None,
    batch_size: BatchSizes = None,
    standardize: Standardize = None,
    head_option: HeadOptions = None,
    fold: FoldsToRun = None,
    grid: GridFile = None,
    model: Model = None,
    workdir: Workdir = Path("."),
    manifest: ManifestPath = None,
    out: OutPath = None,
    device: Device = "auto",
    jobs: Jobs = None,
    threads: Threads = 1,
    folds: FoldScheme = None,
    k: KFolds = None,
    dev: DevSplit = "random",
    layers: Layers = None,
    task: Task = "categorical",
    test_manifest: TestManifest = None,
    label_map: LabelMap = None,
) -> None:
    from ser.cli.train_cmd import parse_label_map, parse_layers
    from ser.studies.grid import HEAD_OPTION_PREFIX, build_grid
    from ser.studies.sweep import SweepSettings, run_sweep

    axes = {
        "head": head, "shift_proportion": shift_proportion, "shift_placement": shift_placement,
        "shift_bidirectional": shift_bidirectional, "shift_stride": shift_stride, "seed": seeds, "epochs": epochs,
        "lr": lr, "batch_size": batch_size, "standardize": standardize,
    }
    plan = build_grid(grid, {name: values or [] for name, values in axes.items()}, head_option or [], fold)
    for name in {name for part in plan.parts for name in part if name.startswith(HEAD_OPTION_PREFIX)}:
        for value in plan.values(name):
            validation.head_option_value(name[len(HEAD_OPTION_PREFIX):], value)
    settings = SweepSettings(
        workdir=workdir, manifest=manifest, model=model, out=out, device=device, jobs=jobs, threads=threads,
        folds=folds, k=k, dev=dev, layers=parse_layers(layers) if layers else None, task=task,
        test_manifest=test_manifest, label_map=parse_label_map(label_map),
    )
    outcome = run_sweep(plan, settings)
    print_outcome(outcome)
    if outcome.planned and outcome.done + outcome.skipped == 0:
        from ser.errors import TrainingError

        raise TrainingError(f"every run of the sweep failed ({outcome.failed} failed, {outcome.diverged} diverged)",
                            f"see error.txt in the run directories under {outcome.sweep_dir}")


def print_outcome(outcome) -> None:
    """Counts, timings, the per-configuration mean ± std table and where the files are."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, Console().width))
    seconds = outcome.seconds
    console.print(
        f"sweep: {outcome.planned} run × fold: {outcome.done} trained, {outcome.skipped} already finished, "
        f"{outcome.failed} failed, {outcome.diverged} diverged — {outcome.jobs} jobs; seconds: start-up {seconds['startup']:.2f}, "
        f"cache load {seconds['load']:.2f}, training phase {seconds['runs']:.2f} "
        f"(runs' own time summed: {seconds['train']:.2f}), wall {seconds['wall']:.2f}",
        markup=False, highlight=False, soft_wrap=True,
    )
    summary = outcome.summary
    if not summary.empty:
        metrics = [m for m in ("ua", "wa", "macro_f1", "ccc_mean") if f"{m}_mean" in summary.columns]
        table = Table(title="test metrics at the dev-selected epoch (mean ± std over folds and seeds)")
        for column in ("configuration", "n", *metrics):
            table.add_column(column, justify="left" if column == "configuration" else "right")
        for _, row in summary.iterrows():
            cells = [f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}" for m in metrics]
            table.add_row(str(row["config"]), str(row["n"]), *cells)
        console.print(table)
    print(f"sweep table: {outcome.table_path}")
    print(f"summary: {outcome.summary_path}")
    print(f"next: ser report {outcome.sweep_dir}")
