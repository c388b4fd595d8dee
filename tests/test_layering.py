"""The package's layering, read from the source with `ast`: imports point one way,
cli → studies → training → data → features, heads → errors, registry; `features` and `heads`
never import each other; no module is over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ser"
MAX_LINES = 600

# rank of each top-level part of `ser`: a module may import its own part or a lower rank
RANKS = {"errors": 0, "registry": 0, "features": 1, "heads": 1, "data": 2, "training": 3, "studies": 4, "cli": 5,
         "": 6}  # "": the root package (ser/__init__.py, the public API)
SIBLINGS_APART = {"features", "heads"}  # same rank, never importing each other


def part_of(module: str) -> str:
    """`ser.training.loop` → `training`; `ser` → `` (the root)."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def module_name(path: Path, root: Path = PACKAGE) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every `ser` import in the file, also those inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, base if base != "ser" else f"ser.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "ser" or name.startswith("ser.")]


def violations(root: Path = PACKAGE) -> list[str]:
    """One line per import against the layering, and per module over MAX_LINES lines."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        own = part_of(source)
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            problems.append(f"{path.relative_to(root.parent)}: {lines} lines (at most {MAX_LINES})")
        for line, target in imported_modules(path, root):
            other = part_of(target)
            if other == own:
                continue
            if other not in RANKS:
                problems.append(f"{path.relative_to(root.parent)}:{line} imports {target}: not a known layer")
            elif RANKS[other] > RANKS[own] or (own in SIBLINGS_APART and other in SIBLINGS_APART):
                problems.append(f"{path.relative_to(root.parent)}:{line} imports {target} ({own or 'ser'} → {other})")
    return problems


def test_imports_point_one_way_and_modules_stay_small():
    assert violations() == []


@pytest.mark.parametrize(
    ("where", "planted", "expected"),
    [
        ("data/folds.py", "from ser.training.loop import train_fold\n", "data → training"),
        ("features/audio.py", "from ser.heads import create_head\n", "features → heads"),
        ("heads/cnn.py", "def f():\n    from ser.features.cache import CacheReader\n", "heads → features"),
        ("training/loop.py", "from ..studies import sweep\n", "training → studies"),
    ],
)
def test_a_planted_upward_import_is_caught(tmp_path, where, planted, expected):
    copy = tmp_path / "ser"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (copy / where).write_text((copy / where).read_text() + planted)
    found = violations(copy)
    assert len(found) == 1 and expected in found[0], found


def test_a_module_over_the_limit_is_caught(tmp_path):
    copy = tmp_path / "ser"
    copy.mkdir()
    (copy / "errors.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert violations(copy) == [f"ser/errors.py: {MAX_LINES + 1} lines (at most {MAX_LINES})"]
