"""Thread defaults: the CPUs a process may use (affinity, cgroup quota), brief OpenMP waits, `--threads`."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from ser.training import threads

REPO = Path(__file__).resolve().parents[2]


def test_cgroup_quota_v2_and_v1(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(v1) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(v1) is None
    assert threads.cgroup_cpu_limit(tmp_path / "absent") is None


def test_available_cpus_respects_affinity_and_quota(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    affinity = len(os.sched_getaffinity(0))
    assert 1 <= threads.available_cpus() <= affinity
    assert threads.available_cpus(tmp_path / "absent") == affinity  # no quota: the affinity mask
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one thread
    assert threads.available_cpus(tmp_path) == 1
    before = torch.get_num_threads()
    try:
        assert threads.use_threads(None) == threads.available_cpus() == torch.get_num_threads()
        assert threads.use_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's per-rank setting, or the user's, is kept
        assert threads.use_threads(None) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "auto")  # not a count: the CPUs this process may use
        assert threads.default_threads() == threads.available_cpus()
    finally:
        torch.set_num_threads(before)


def cli_wait_settings(**env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `ser train --threads 0` with `env` over the wait variables; its exit and the wait
    variables it ended with (OMP_WAIT_POLICY, GOMP_SPINCOUNT)."""
    environment = {key: value for key, value in os.environ.items() if key not in threads.WAIT_SETTINGS}
    code = ("import os, sys\nfrom ser.cli import main\nsys.argv = ['ser', 'train', '--threads', '0']\n"
            "try:\n    main()\nfinally:\n    print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))\n")
    done = subprocess.run([sys.executable, "-c", code], env={**environment, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=120)
    return done, done.stdout.split()


def test_cli_waits_briefly_and_validates_threads():
    done, waits = cli_wait_settings()
    assert done.returncode == 2
    assert "--threads" in done.stderr and "Traceback" not in done.stderr
    assert waits == ["PASSIVE", "1000"]


def test_wait_settings_the_user_made_are_kept():
    assert cli_wait_settings(OMP_WAIT_POLICY="ACTIVE")[1] == ["ACTIVE", "None"]  # a spin count would cut ACTIVE short
    assert cli_wait_settings(GOMP_SPINCOUNT="0")[1] == ["None", "0"]
