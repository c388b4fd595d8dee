"""`write_report` on run directories written by the real trainer (through a real sweep)."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ser.errors import UserInputError
from ser.studies.grid import Grid
from ser.studies.floor import ProbeFloors
from ser.studies.report import slug, write_report
from ser.studies.results import collect_runs, configuration_columns, with_config_labels
from ser.studies.sweep import SweepSettings, run_sweep
from ser.training.probe import cached_probe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, build_fbank_workspace) -> Path:
    root = tmp_path_factory.mktemp("report")
    workspace = build_fbank_workspace(root / "ws", speakers=4, sessions=2, per_class=4)
    grid = Grid(
        ({"head": ("shiftcnn",), "shift_proportion": ("1/2", "1/8"), "shift_placement": ("residual",),
          "seed": (0, 1), "epochs": (2,)},
         {"head": ("linear",), "head_option.layers": ([5],), "seed": (0,), "epochs": (2,)}),  # fails: 1 layer
        folds=("1",),
    )
    outcome = run_sweep(grid, SweepSettings(workdir=workspace, out=root / "sweep", device="cpu", jobs=1,
                                            record_test_curve=True))  # for the labelled optimistic table
    assert (outcome.done, outcome.failed) == (4, 1)
    return root / "sweep"


@pytest.fixture(scope="module")
def report(sweep_dir: Path) -> Path:
    """report.md written into its own folder (figures/ beside it)."""
    return write_report(sweep_dir, sweep_dir.parent / "report")


def table_cells(markdown: str, title: str) -> dict[str, dict[str, str]]:
    """{row label: {column: cell}} of the Markdown table under the heading `title`."""
    blocks = markdown.split(title + "\n\n", 1)[1].split("\n\n")
    block = next(b for b in blocks if b.startswith("|")).splitlines()  # the first table (after any paragraph)
    header = [cell.strip() for cell in block[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in block[2:]]
    return {row[0]: dict(zip(header[1:], row[1:])) for row in rows}


def parse_cell(cell: str) -> tuple[float, float, int]:
    mean, std, n = re.fullmatch(r"([\d.]+)(?: ± ([\d.]+))? \(n=(\d+)\)(?: ▽)?", cell).groups()
    assert (std is None) == (n == "1")  # one result has no spread to show
    return float(mean), float(std) if std else math.nan, int(n)


def test_tables_equal_the_per_run_metrics_files(sweep_dir: Path, report: Path):
    markdown = report.read_text()
    assert "dev split" in markdown and "Optimistic" in markdown
    assert "Dev splits (run × fold results): random (2 training speakers < 4) (4)." in markdown  # 4 speakers, 2 sessions
    for metric in ("ua", "wa"):
        cells = table_cells(markdown, f"### Test {metric.upper()} — shift_placement = residual")
        for proportion in ("1/2", "1/8"):
            run_dirs = sorted(sweep_dir.glob(f"shiftcnn-p{proportion.replace('/', '_')}-residual-*-s*/fold1"))
            assert len(run_dirs) == 2  # two seeds
            values = np.array([json.loads((d / "metrics.json").read_text())["test"][metric] for d in run_dirs])
            mean, std, n = parse_cell(cells["shiftcnn"][proportion])
            assert n == 2
            assert mean == pytest.approx(100 * values.mean(), abs=0.006)
            assert std == pytest.approx(100 * values.std(ddof=1), abs=0.006)
    assert list(table_cells(markdown, "### Test UA — shift_placement = residual")["shiftcnn"]) == ["1/2", "1/8"]


def test_optimistic_numbers_sit_only_in_their_labelled_table(sweep_dir: Path, report: Path):
    markdown = report.read_text()
    honest, optimistic = markdown.split("## Optimistic numbers", 1)
    assert "optimistic" not in honest.lower()
    run_dirs = sorted(sweep_dir.glob("shiftcnn-p1_2-residual-*/fold1"))
    best = [json.loads((d / "metrics.json").read_text())["test_best_epoch_optimistic"]["ua"] for d in run_dirs]
    row = next(line for line in optimistic.splitlines() if line.startswith("| shiftcnn 1/2 residual"))
    assert f"{100 * np.mean(best):.2f} ± {100 * np.std(best, ddof=1):.2f} (n=2)" in row


def test_runs_without_the_test_curve_have_no_optimistic_table(sweep_dir: Path, tmp_path: Path):
    """What runs write without --record-test-curve: metrics.json without the optimistic block."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    for path in copy.rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        metrics.pop("test_best_epoch_optimistic", None)
        path.write_text(json.dumps(metrics))
    markdown = write_report(copy, tmp_path / "report").read_text()
    assert "optimistic" not in markdown.lower() and "### Test UA" in markdown


def test_figures_are_written_and_failed_runs_listed(report: Path):
    markdown = report.read_text()
    figures = sorted(p.name for p in (report.parent / "figures").glob("*.png"))
    assert "layer_weights.png" in figures and "training_curves.png" in figures
    assert {"ua_vs_proportion.png", "wa_vs_proportion.png"} <= set(figures)
    assert sum(name.startswith("confusion_") for name in figures) == 2  # one per finished configuration
    for name in figures:
        assert (report.parent / "figures" / name).read_bytes()[:8] == PNG_MAGIC
        assert f"(figures/{name})" in markdown
    failed = markdown.split("## Failed runs", 1)[1]
    assert "linear-layers" in failed and "layer 5 does not exist" in failed


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path: Path):
    with pytest.raises(UserInputError, match="no run directories"):
        write_report(tmp_path)
    with pytest.raises(UserInputError, match="missing does not exist"):
        write_report(tmp_path / "missing")


def test_any_folder_above_the_run_directories_gives_the_same_tables(sweep_dir: Path, report: Path, tmp_path: Path):
    title = "### Test UA — shift_placement = residual"
    from_parent = table_cells(write_report(sweep_dir.parent, tmp_path).read_text(), title)
    assert from_parent == table_cells(report.read_text(), title)
    assert (tmp_path / "report.md").is_file()


def test_tables_written_by_other_studies_are_included(sweep_dir: Path, tmp_path: Path):
    table = sweep_dir / "distill_ablation.md"
    table.write_text("## Distillation ablation\n\n| system | ccc_valence |\n|---|---|\n| teacher | 0.4 |\n")
    try:
        markdown = write_report(sweep_dir, tmp_path / "with_study").read_text()
    finally:
        table.unlink()
    assert "## Distillation ablation" in markdown and "| teacher | 0.4 |" in markdown


def test_figures_in_vector_formats_and_unknown_formats_refused(tmp_path: Path):
    from ser.studies import figures

    weights = {"peaked": np.array([0.1, 0.2, 0.7]), "uniform": np.full(3, 1 / 3)}
    assert figures.layer_weights_figure(weights, tmp_path / "w.pdf").read_bytes()[:4] == b"%PDF"
    matrices = {"fold 1": np.array([[3, 1], [0, 4]]), "fold 2": np.array([[2, 2], [1, 3]])}
    svg = figures.confusion_figure(matrices, ["a", "b"], "x", tmp_path / "c.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "75%" in svg  # row-normalised: 3 of the 4 true a's
    with pytest.raises(UserInputError, match="figure format"):
        write_report(tmp_path, figure_format="eps")


def test_ablation_tables_start_with_the_probe_floor_and_mark_what_does_not_beat_it(sweep_dir: Path, report: Path):
    workspace = sweep_dir.parent / "ws"
    probe = cached_probe(workspace / "manifests" / "synthetic.csv", workspace / "cache" / "synthetic" / "fbank.h5")
    fold = json.loads(next(sweep_dir.glob("shiftcnn-*/fold1/config.json")).read_text())["fold"]
    for metric in ("ua", "wa"):
        cells = table_cells(report.read_text(), f"### Test {metric.upper()} — shift_placement = residual")
        label = list(cells)[0]
        assert label == "probe floor: layer 0 (best on dev)"  # fbank: one layer, so no all-layer row
        floor, _, n = parse_cell(cells[label]["1/2"])
        assert n == 1 and floor == pytest.approx(100 * probe.loc[probe["fold"] == fold, metric].mean(), abs=0.006)
        for cell in cells["shiftcnn"].values():
            assert cell.endswith("▽") == (parse_cell(cell)[0] <= floor)


def test_the_floor_needs_the_cache_and_says_so(sweep_dir: Path, tmp_path: Path):
    runs_dir = shutil.copytree(sweep_dir, tmp_path / "copied", ignore=shutil.ignore_patterns("sweep.json", "*.png"))
    done = collect_runs(runs_dir).query("status == 'done'")
    labelled = with_config_labels(done, configuration_columns(done))
    configs = list(dict.fromkeys(labelled["config"]))
    lost = ProbeFloors(labelled, runs_dir)  # no sweep.json, no workspace above the runs
    assert lost.floor(configs) is None
    assert lost.notes == [f"synthetic/fbank: no manifest and cache found near {runs_dir}; pass --workdir"]
    found = ProbeFloors(labelled, runs_dir, workdir=sweep_dir.parent / "ws").floor(configs)
    assert [row.label for row in found.rows] == ["probe floor: layer 0 (best on dev)"]


def test_calibration_section_ece_column_reliability_and_coverage(sweep_dir: Path, report: Path):
    import pandas as pd

    from ser.studies.calibration_report import selective_accuracy
    from ser.training.calibration import ece, ece_noise_floor, recalibrate

    markdown = report.read_text()
    assert "ECE calibrated (uncalibrated)" in markdown.split("## All configurations", 1)[1].split("\n\n")[1]
    rows = table_cells(markdown, "## Calibration (temperature scaling, fitted on dev)")
    coverage = table_cells(markdown, "### Accuracy against coverage (selective prediction)")
    done = collect_runs(sweep_dir).query("status == 'done'")
    labelled = with_config_labels(done, configuration_columns(done))
    assert set(rows) == set(coverage) == set(labelled["config"]) and len(rows) == 2
    for name, group in labelled.groupby("config"):
        probabilities, labels = [], []
        for fold_dir in (sweep_dir / d for d in group["run_dir"]):
            block = json.loads((fold_dir / "metrics.json").read_text())["calibration"]
            assert rows[name]["ECE before → after"] != "—" and block["temperature"] > 0
            table = pd.read_csv(fold_dir / "predictions.csv")
            columns = [c for c in table.columns if c.startswith("p_")]
            probabilities.append(recalibrate(table[columns].to_numpy(), block["temperature"]))
            labels.append(table["label"].map({c[2:]: k for k, c in enumerate(columns)}).to_numpy())
        curve = selective_accuracy(np.concatenate(probabilities), np.concatenate(labels))
        pooled = np.concatenate(probabilities), np.concatenate(labels)
        assert rows[name]["pooled ECE before → after (noise floor)"].endswith(
            f"→ {ece(*pooled):.3f} ({ece_noise_floor(pooled[0]):.3f})")
        assert coverage[name]["100%"] == f"{100 * curve[100]:.1f}" and coverage[name]["10%"] == f"{100 * curve[10]:.1f}"
        assert (report.parent / "figures" / f"reliability_{slug(name)}.png").is_file()
    assert (report.parent / "figures" / "accuracy_vs_coverage.png").read_bytes()[:8] == PNG_MAGIC


def test_selective_accuracy_keeps_the_most_confident_share():
    from ser.studies.calibration_report import selective_accuracy

    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 0])  # right, wrong, right, wrong — by confidence 0.9, 0.8, 0.7, 0.55
    curve = selective_accuracy(p, y, coverages=(100, 75, 50, 25))
    assert curve == {100: 0.5, 75: 2 / 3, 50: 0.5, 25: 1.0}


def test_the_layer_weight_figure_makes_room_for_long_configuration_names(tmp_path: Path):
    """The names of a workspace's many configurations run long: the figure grows to hold them,
    instead of matplotlib warning that its layout could not be applied."""
    import warnings

    from ser.studies import figures

    name = "shiftcnn 1/16 residual model=fbank per_speaker=False dev=random epochs=15 lr=0.003 batch_size=16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures.layer_weights_figure({name: np.array([1.0]), "linear": np.array([1.0])}, tmp_path / "w.png")
