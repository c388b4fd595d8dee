"""Large tensors on huge pages: counted in page faults of real processes (torch reads the setting once)."""

import os
import subprocess
import sys

from pathlib import Path

import pytest

# Allocates and fills a 256 MiB tensor three times; prints the minor page faults of the last two.
FAULTS = """
import resource, torch
torch.ones(1).add_(1)  # torch's own start-up allocations
def fill():
    torch.empty(64 * 1024 * 1024).fill_(1.0)  # 256 MiB, freed at once
fill()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fill(); fill()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

# Runs `ser --help` in this process, then prints the variable the CLI left for torch.
CLI_ENVIRONMENT = """
import os, sys
from ser.cli import main
sys.argv = ["ser", "--help"]
try:
    main()
except SystemExit:
    pass
print(os.environ["THP_MEM_ALLOC_ENABLE"], file=sys.stderr)
"""


def huge_pages_available(setting: Path = Path("/sys/kernel/mm/transparent_hugepage/enabled")) -> bool:
    """Whether the kernel gives huge pages to a region that asks for them ([always] or [madvise])."""
    try:
        return "[never]" not in setting.read_text()
    except OSError:
        return False


def page_faults(**env: str) -> int:
    environment = {name: value for name, value in os.environ.items() if name != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True,
                          env={**environment, **env})
    return int(done.stdout)


@pytest.mark.skipif(not huge_pages_available(), reason="this kernel gives no transparent huge pages")
def test_large_tensors_on_huge_pages_fault_far_less():
    pages = 2 * 256 * 1024 * 1024 // 4096  # two fills
    assert page_faults() >= pages  # glibc maps each 256 MiB block afresh: every 4 KiB page faults
    assert page_faults(THP_MEM_ALLOC_ENABLE="1") < pages // 4


def test_the_cli_asks_for_huge_pages_and_keeps_the_users_choice():
    code = CLI_ENVIRONMENT
    environment = {name: value for name, value in os.environ.items() if name != "THP_MEM_ALLOC_ENABLE"}
    for given, expected in ((None, "1"), ("0", "0")):
        env = environment if given is None else {**environment, "THP_MEM_ALLOC_ENABLE": given}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert done.stderr.strip().splitlines()[-1] == expected
