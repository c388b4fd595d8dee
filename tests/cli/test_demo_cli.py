"""`ser demo`, the README's first command, run in a workspace that already holds another corpus."""

from __future__ import annotations

from typer.testing import CliRunner

from ser.cli import app, demo_cmd


def test_the_demo_trains_its_own_corpus_beside_another_ones_manifest(tmp_path, monkeypatch):
    """It stopped at step 2 with "several manifests …: pick one with --manifest", an option it lacks."""
    monkeypatch.setattr(demo_cmd, "DEMO_EPOCHS", 1)  # the flow is tested here, not the accuracy
    mine = tmp_path / "manifests" / "mine.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("id,path,label\nclip1,/data/clip1.wav,angry\nclip2,/data/clip2.wav,sad\n")
    before = mine.read_bytes()
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path), "--threads", "2"])  # in process: no fork
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs" / "synthetic" / "fbank").iterdir()
    assert sorted(p.name for p in run.glob("fold*")) == ["fold1", "fold2", "fold3", "fold4"]
    assert (run / "report.md").is_file() and "4/4 report" in result.output
    assert mine.read_bytes() == before and sorted(p.name for p in mine.parent.iterdir()) == ["mine.csv", "synthetic.csv"]
