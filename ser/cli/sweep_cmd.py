"""`ser sweep`: train a grid of configurations × folds × seeds on one loaded copy of the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser.cli import validation
from ser.cli.options import (Device, DevSplit, FoldScheme, FrequencyWarpOption, KFolds, ManifestPath, OutPath,
                             PerSpeaker, RecordTestCurve, Refit, TrackingLog, Workdir)
from ser.cli.train_cmd import LabelMap, TestManifest

HELP = "Train a grid of heads/options × folds × seeds concurrently on one loaded cache (restartable)."
EXAMPLES = """Examples:

  ser sweep --head shiftcnn,shiftlstm,shiftformer --shift-proportion 1/2,1/4,1/8,1/16
  --shift-placement residual,inplace --fold all --seeds 0,1,2

  ser sweep --grid scripts/grids/shiftser.yaml --jobs 4 --device cuda

  ser sweep --head cnn --head-option num_blocks=1,2,3 --epochs 30 --fold 1

  ser sweep --head shiftcnn --shift-proportion 1/2,1/4,1/8,1/16 --seeds 0,1 --batch-runs on
  (the 8 runs train as stacked models, one forward/backward for all; the default on a GPU)

  ser sweep --head linear --seeds 0,1,2,3 --lr 1e-4,1e-3 --batch-runs on
  (8 SUPERB probes as one stacked model: on CPU too, several times faster than one by one)

  ser sweep --head shiftcnn,cnn --seeds 0,1,2 --test-manifest manifests/emodb.csv --label-map happiness=happy
  (cross-corpus: one fold, runs under runs/<corpus>/<model>/sweep-x<test corpus>/)

  ser sweep --search optuna --trials 30 --head shiftcnn,shiftlstm --lr 1e-5:1e-2 --epochs 10:50 --fold 1
  (Optuna TPE samples the options instead of training every combination; chosen on dev only;
  search.csv lists the trials. Needs the search extra.)

  ser sweep --head shiftcnn --seeds 0,1,2 --log tensorboard   (then: tensorboard --logdir runs/)

  ser sweep --grid grid.yaml --backend ray --address auto --gpus-per-run 0.25
  (one Ray task per run × fold on a running Ray cluster; see docs/cluster.md)

  ser sweep --grid grid.yaml --shard $((SLURM_ARRAY_TASK_ID + 1))/8   then   ser sweep --grid grid.yaml --collect
  (8 array jobs train disjoint shares; --collect writes sweep.csv from their run directories)

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
Standardize = _values("--standardize", "true,false: z-score features with each fold's training statistics "
                      "(default: on for fbank/mfcc/eGeMAPS/ComParE caches, off for pre-trained models' caches).")
HeadOptions = _values("--head-option", "key=v1,v2 for any other head option (repeatable).")
FoldsToRun = _values("--fold", "all (default), or fold numbers (1-based, as in fold<K>) or names, e.g. 1,2.")
GridFile = Annotated[Optional[Path], typer.Option("--grid", help="YAML or TOML grid file.")]
Model = Annotated[Optional[str], typer.Option("--model", help="Cache model (default: the only cache).")]
Jobs = Annotated[Optional[int], typer.Option("--jobs", help="Concurrent runs (default: CPU cores, or 4 on a GPU).")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="Intra-op threads of each worker "
                   "process (default 1), or of a stacked model trained in the sweep process (GPU, or --jobs 1; "
                   "default: the CPUs this process may use).")]
BatchRuns = Annotated[str, typer.Option("--batch-runs", help="on: runs of one head family that share a graph "
                      "(cnn/shiftcnn, transformer/shiftformer, lstm/shiftlstm: seeds, folds, proportions, placements; timnet, "
                      "ctarnn: seeds, folds; linear: seeds, folds, learning rates) "
                      "train as stacked models (on CPU one per worker); off: one by one; auto (default): on with a "
                      "GPU, off on CPU (no faster there for the CNN family, and a run alone matches `ser train` "
                      "exactly; linear-probe sweeps are several times faster with on).")]
Layers = Annotated[Optional[str], typer.Option("--layers", help="Cache layers, e.g. 0,4,8-12 (default all).")]
Task = Annotated[str, typer.Option("--task", help="What to learn: categorical (the manifest's label).")]
Search = Annotated[Optional[str], typer.Option("--search", help="optuna: sample the options (low:high ranges "
                                               "allowed) instead of the full grid.")]
Trials = Annotated[Optional[int], typer.Option("--trials", min=1, help="Configurations --search trains (default 20).")]
SearchSeed = Annotated[int, typer.Option("--search-seed", help="Seed of the --search sampler (reruns replay it).")]
Backend = Annotated[str, typer.Option("--backend", help="local (processes on this machine) | ray (tasks on a Ray cluster).")]
Address = Annotated[Optional[str], typer.Option("--address", help="Ray cluster to join, e.g. auto (default: start Ray here).")]
GpusPerRun = Annotated[float, typer.Option("--gpus-per-run", help="Ray: GPUs per run; fractions share a GPU (0: CPU).")]
ShardOption = Annotated[Optional[str], typer.Option("--shard", help="I/N: train only the I-th of N disjoint shares (array jobs).")]
Collect = Annotated[bool, typer.Option("--collect", help="Train nothing; write sweep.csv from the shares' run directories.")]


def check_cluster_options(backend: str, address: str | None, gpus_per_run: float, jobs: int | None,
                          device: str, shard: str | None, collect: bool):
    """Option combinations that cannot work, refused before anything loads; returns the parsed shard."""
    from ser.errors import UserInputError
    from ser.studies.shard import parse_shard
    from ser.studies.sweep import BACKENDS

    if backend not in BACKENDS:
        raise typer.BadParameter(f"{backend!r} is not one of {', '.join(BACKENDS)}", param_hint="--backend")
    if backend != "ray" and (address is not None or gpus_per_run):
        raise typer.BadParameter("--address and --gpus-per-run need --backend ray", param_hint="--backend")
    if backend == "ray" and jobs is not None:
        raise typer.BadParameter("Ray runs as many runs at once as the cluster has CPUs/GPUs for; "
                                 "use --threads / --gpus-per-run", param_hint="--jobs")
    if backend == "ray" and device not in ("auto", "cpu"):
        raise typer.BadParameter("with --backend ray each run's device follows --gpus-per-run", param_hint="--device")
    if gpus_per_run < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--gpus-per-run")
    if collect and shard is not None:
        raise typer.BadParameter("--collect merges every share; run it without --shard", param_hint="--collect")
    try:
        return parse_shard(shard) if shard is not None else None
    except UserInputError as error:
        raise typer.BadParameter(f"{error.message} ({error.hint})", param_hint="--shard") from None


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
    threads: Threads = None,
    batch_runs: BatchRuns = "auto",
    folds: FoldScheme = None,
    k: KFolds = None,
    dev: DevSplit = "auto",
    record_test_curve: RecordTestCurve = False,
    per_speaker: PerSpeaker = False,
    refit: Refit = False,
    frequency_warp: FrequencyWarpOption = 0.0,
    layers: Layers = None,
    task: Task = "categorical",
    test_manifest: TestManifest = None,
    label_map: LabelMap = None,
    log: TrackingLog = None,
    search: Search = None,
    trials: Trials = None,
    search_seed: SearchSeed = 0,
    backend: Backend = "local",
    address: Address = None,
    gpus_per_run: GpusPerRun = 0.0,
    shard: ShardOption = None,
    collect: Collect = False,
) -> None:
    from ser.cli.train_cmd import parse_label_map, parse_layers, warn_schedule
    from ser.studies.grid import HEAD_OPTION_PREFIX, build_grid
    from ser.studies.sweep import SweepSettings, run_sweep
    from ser.training.recipes import recipe_for

    share = check_cluster_options(backend, address, gpus_per_run, jobs, device, shard, collect)
    axes = {
        "head": head, "shift_proportion": shift_proportion, "shift_placement": shift_placement,
        "shift_bidirectional": shift_bidirectional, "shift_stride": shift_stride, "seed": seeds, "epochs": epochs,
        "lr": lr, "batch_size": batch_size, "standardize": standardize,
    }
    if batch_runs not in ("on", "off", "auto"):
        raise typer.BadParameter(f"{batch_runs!r} is not on, off or auto", param_hint="--batch-runs")
    if search is not None and (backend != "local" or share is not None or collect):
        raise typer.BadParameter("--search runs its trials one after another on this machine", param_hint="--search")
    if search not in (None, "optuna"):
        raise typer.BadParameter(f"{search!r} is not a search: choose optuna", param_hint="--search")
    if trials is not None and search is None:
        raise typer.BadParameter("--trials needs --search optuna", param_hint="--trials")
    ranged = [name for name, values in axes.items() if search is None and any(":" in v for v in values or [])]
    if ranged:
        raise typer.BadParameter("low:high ranges need --search optuna", param_hint=f"--{ranged[0].replace('_', '-')}")
    settings = SweepSettings(
        workdir=workdir, manifest=manifest, model=model, out=out, device=device, jobs=jobs, threads=threads,
        batch_runs=batch_runs,
        folds=folds, k=k, dev=dev, record_test_curve=record_test_curve, per_speaker=per_speaker, refit=refit,
        frequency_warp=frequency_warp,
        layers=parse_layers(layers) if layers else None, task=task,
        test_manifest=test_manifest, label_map=parse_label_map(label_map), log=log, backend=backend,
        address=address, gpus_per_run=gpus_per_run, shard=share,
    )
    if search is not None:
        from ser.studies.search import run_search

        print_search(run_search({name: values or [] for name, values in axes.items()}, head_option or [], fold,
                                settings, grid, trials or 20, search_seed, search))
        return
    plan = build_grid(grid, {name: values or [] for name, values in axes.items()}, head_option or [], fold)
    for name in {name for part in plan.parts for name in part if name.startswith(HEAD_OPTION_PREFIX)}:
        for value in plan.values(name):
            validation.head_option_value(name[len(HEAD_OPTION_PREFIX):], value)
    for head_name, epoch_count in dict.fromkeys((p.get("head"), p.get("epochs")) for p in plan.points()):
        if head_name is not None:
            warn_schedule(recipe_for(head_name).with_overrides(epochs=epoch_count))
    if collect:
        from ser.studies.collect import collect_sweep

        print_collected(collect_sweep(plan, settings))
        return
    outcome = run_sweep(plan, settings)
    print_outcome(outcome, sharded=share is not None)
    if outcome.planned and outcome.done + outcome.skipped == 0:
        from ser.errors import TrainingError

        raise TrainingError(f"every run of the sweep failed ({outcome.failed} failed, {outcome.diverged} diverged)",
                            f"see error.txt in the run directories under {outcome.sweep_dir}")


def _console():
    from rich.console import Console

    return Console(width=max(100, Console().width))


def print_outcome(outcome, sharded: bool = False) -> None:
    """Counts, timings, the per-configuration mean ± std table and where the files are."""
    console = _console()
    seconds = outcome.seconds
    where = "on Ray" if outcome.backend == "ray" else f"{outcome.jobs} jobs"
    console.print(
        f"sweep: {outcome.planned} run × fold: {outcome.done} trained, {outcome.skipped} already finished, "
        f"{outcome.failed} failed, {outcome.diverged} diverged — {where}; seconds: start-up {seconds['startup']:.2f}, "
        f"cache load {seconds['load']:.2f}, training phase {seconds['runs']:.2f} "
        f"(runs' own time summed: {seconds['train']:.2f}), wall {seconds['wall']:.2f}",
        markup=False, highlight=False, soft_wrap=True,
    )
    print_summary(console, outcome.summary)
    print(f"sweep table: {outcome.table_path}")
    print(f"summary: {outcome.summary_path}")
    if sharded:
        print("next, once every share is done: the same command with --collect instead of --shard")
    else:
        print(f"next: ser report {outcome.sweep_dir}")


def print_collected(collected) -> None:
    """What --collect found, the table over every share, and the runs still missing."""
    console = _console()
    console.print(f"collected: {collected.planned} run × fold: {collected.done} done, {collected.failed} failed, "
                  f"{collected.pending} not run yet", markup=False, highlight=False, soft_wrap=True)
    print_summary(console, collected.summary)
    if collected.pending:
        print("rerun the shares that did not finish (same --shard I/N), then --collect again")
    print(f"sweep table: {collected.table_path}")
    print(f"summary: {collected.summary_path}")


def print_summary(console, summary) -> None:
    """The per-configuration mean ± std table."""
    from rich.table import Table

    from ser.training.statistics import mean_with_spread

    if not summary.empty:
        metrics = [m for m in ("ua", "wa", "macro_f1", "ccc_mean") if f"{m}_mean" in summary.columns]
        table = Table(title="test metrics at the dev-selected epoch (mean ± std over folds and seeds)")
        for column in ("configuration", "n", *metrics):
            table.add_column(column, justify="left" if column == "configuration" else "right")
        for _, row in summary.iterrows():
            cells = [mean_with_spread(row[f"{m}_mean"], row[f"{m}_std"], 4) for m in metrics]  # n=1: no ± nan
            table.add_row(str(row["config"]), str(row["n"]), *cells)
        console.print(table)


def print_search(outcome) -> None:
    """The trials (sampled values and dev score), the best one, and where the files are."""
    console = _console()
    console.print(outcome.trials.to_string(index=False), markup=False, highlight=False)
    if outcome.best is not None:
        console.print(f"best on dev: trial {outcome.best['trial']} {outcome.best['params']}", markup=False)
    print(f"sweep table: {outcome.table_path}")
    print(f"trials: {outcome.search_path.with_name('search.csv')}")
    print(f"next: ser report {outcome.sweep_dir}")
