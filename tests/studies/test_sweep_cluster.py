"""Sweeps past one machine, on a real fbank cache of a small synthetic corpus: array-job shares
(`--shard I/N` + `--collect`) and a local Ray instance (num_cpus=2) give the tables of one local
sweep, byte for byte."""

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import UserInputError
from ser.studies.grid import build_grid
from ser.studies.collect import collect_sweep
from ser.studies.shard import Shard, parse_shard
from ser.studies.sweep import SweepSettings, run_sweep

GRID = build_grid(None, {"head": ["linear"], "seed": ["0,1"], "epochs": ["2"]}, [], None)  # 2 seeds × 2 folds


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_fbank_workspace) -> Path:
    """manifests/synthetic.csv (2 sessions → 2 folds) + cache/synthetic/fbank.h5."""
    return build_fbank_workspace(tmp_path_factory.mktemp("cluster-ws"), speakers=4, sessions=2, per_class=3)


@pytest.fixture(scope="module")
def one_sweep(workspace: Path) -> Path:
    """The reference: the whole grid in one local sweep."""
    outcome = run_sweep(GRID, SweepSettings(workdir=workspace, out=workspace / "one", device="cpu", jobs=1))
    assert (outcome.done, outcome.failed) == (4, 0)
    return outcome.sweep_dir


def tables(sweep_dir: Path) -> dict[str, str]:
    """sweep.csv, the summaries and every run's summary.json, as text."""
    names = ["sweep.csv", "sweep_summary.csv", "sweep_summary.json"]
    found = {name: (sweep_dir / name).read_text() for name in names}
    found.update({p.relative_to(sweep_dir).as_posix(): p.read_text() for p in sorted(sweep_dir.glob("*/summary.json"))})
    return found


def test_parse_shard_and_shares():
    assert parse_shard(" 2/8 ") == Shard(2, 8)
    for bad in ("0/2", "3/2", "1-2", "a/b"):
        with pytest.raises(UserInputError):
            parse_shard(bad)
    items = list(range(7))
    shares = [Shard(i, 3).take(items) for i in (1, 2, 3)]
    assert sorted(x for share in shares for x in share) == items and shares[0] == [0, 3, 6]


def test_two_shards_and_collect_equal_one_sweep(workspace: Path, one_sweep: Path):
    out = workspace / "sharded"
    first = run_sweep(GRID, SweepSettings(workdir=workspace, out=out, device="cpu", jobs=1, shard=Shard(1, 2)))
    assert (first.planned, first.done) == (2, 2)
    assert not (out / "sweep.csv").exists() and (out / "sweep-shard1of2.csv").is_file()
    early = collect_sweep(GRID, SweepSettings(workdir=workspace, out=out))
    assert (early.done, early.pending) == (2, 2)  # the second share has not run yet

    second = run_sweep(GRID, SweepSettings(workdir=workspace, out=out, device="cpu", jobs=1, shard=Shard(2, 2)))
    assert (second.planned, second.done) == (2, 2)
    collected = collect_sweep(GRID, SweepSettings(workdir=workspace, out=out))
    assert (collected.planned, collected.done, collected.failed, collected.pending) == (4, 4, 0, 0)
    assert tables(out) == tables(one_sweep)
    assert len([name for name in tables(out) if name.endswith("summary.json")]) == 3  # 2 runs + the table's


def test_cluster_options_are_checked_at_the_edge(tmp_path: Path):
    runner = CliRunner()
    for args, message in ((["--shard", "3/2"], "between 1 and N"), (["--gpus-per-run", "0.5"], "need --backend ray"),
                          (["--backend", "slurm"], "not one of"), (["--shard", "1/2", "--collect"], "without --shard"),
                          (["--backend", "ray", "--device", "cuda"], "follows --gpus-per-run")):
        result = runner.invoke(app, ["sweep", "--head", "linear", "--workdir", str(tmp_path), *args])
        text = " ".join(result.output.replace("│", " ").split())  # rich wraps the message in a box
        assert result.exit_code == 2 and message in text, result.output


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra: pip install 'ser[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield ray
    ray.shutdown()


def test_ray_sweep_equals_the_local_sweep_and_skips_finished_runs(workspace: Path, one_sweep: Path, ray_instance):
    settings = SweepSettings(workdir=workspace, out=workspace / "ray", device="cpu", backend="ray")
    outcome = run_sweep(GRID, settings)
    assert (outcome.done, outcome.failed, outcome.backend) == (4, 0, "ray")
    assert tables(outcome.sweep_dir) == tables(one_sweep)
    again = run_sweep(GRID, settings)
    assert (again.skipped, again.done) == (4, 0)
    with pytest.raises(UserInputError, match="has 0 GPUs"):  # refused, not left waiting for a GPU forever
        run_sweep(GRID, dataclasses.replace(settings, out=workspace / "ray-gpu", gpus_per_run=0.5))
