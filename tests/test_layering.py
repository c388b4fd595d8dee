"""The package's layering, read from the source with `ast`: imports point one way,
cli → studies → finetune, distill, inference → training → data → features, heads → registry
→ errors; the siblings of one rank import each other only where the importer's `__init__`
docstring allows it ("May import: …"), `features` and `heads` never; no import circle between
modules, no `_private` name imported from another module, no module over 600 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ser"
MAX_LINES = 600

# rank of each top-level part of `ser`: a module may import its own part or a lower rank
RANKS = {"errors": 0, "registry": 1, "features": 2, "heads": 2, "data": 3, "training": 4,
         "finetune": 5, "distill": 5, "inference": 5, "studies": 6, "cli": 7,
         "": 8}  # "": the root package (ser/__init__.py, the public API)


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


def module_path(module: str, root: Path = PACKAGE) -> Path | None:
    """The file that defines `module` (a module or a package's `__init__`), if any."""
    base = root.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None) of every `ser` import in the file, also those inside
    functions and `TYPE_CHECKING` blocks. `from ser.a import b` names module `ser.a.b` where that
    is a module, else module `ser.a` with name `b`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if module_path(submodule, root) is not None:
                    found.append((node.lineno, submodule, None))
                else:
                    found.append((node.lineno, base, alias.name))
    return [(line, name, what) for line, name, what in found if name == "ser" or name.startswith("ser.")]


def allowed_siblings(part: str, root: Path = PACKAGE) -> set[str]:
    """The parts of the same rank that `part`'s `__init__` docstring lets it import: the
    backticked `ser.<part>` names of its "May import:" text, up to a sentence that says "Never"."""
    init = root / part / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text())) if init.is_file() else None
    if not docstring or "May import:" not in docstring:
        return set()
    allowed = docstring.split("May import:", 1)[1].split("Never", 1)[0]
    return {name for name in re.findall(r"`ser\.(\w+)`", allowed) if name != part}


def layering_violations(root: Path = PACKAGE) -> list[str]:
    """One line per import against the layering, per private name imported across modules, and
    per module over MAX_LINES lines."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        own = part_of(source)
        where = path.relative_to(root.parent)
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            problems.append(f"{where}: {lines} lines (at most {MAX_LINES})")
        for line, target, name in imports_of(path, root):
            if name is not None and name.startswith("_") and not name.startswith("__") and target != source:
                problems.append(f"{where}:{line} imports the private {name} from {target}")
            other = part_of(target)
            if other == own:
                continue
            if other not in RANKS:
                problems.append(f"{where}:{line} imports {target}: not a known layer")
            elif RANKS[other] > RANKS[own]:
                problems.append(f"{where}:{line} imports {target} ({own or 'ser'} → {other})")
            elif RANKS[other] == RANKS[own] and other not in allowed_siblings(own, root):
                problems.append(f"{where}:{line} imports {target} ({own} → its sibling {other}, "
                                f"which ser/{own}/__init__.py does not allow)")
    return problems


def import_circles(root: Path = PACKAGE) -> list[list[str]]:
    """Every strongly connected group of two or more modules in the import graph (Tarjan)."""
    graph = {module_name(path, root): {target for _, target, _ in imports_of(path, root)}
             for path in sorted(root.rglob("*.py"))}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def copy_package(tmp_path: Path) -> Path:
    copy = tmp_path / "ser"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    return copy


def test_imports_point_one_way_and_modules_stay_small():
    assert layering_violations() == []


def test_no_import_circles():
    assert import_circles() == []


@pytest.mark.parametrize(
    ("where", "planted", "expected"),
    [
        ("data/folds.py", "from ser.training.loop import train_fold\n", "data → training"),
        ("features/audio.py", "from ser.heads import create_head\n", "features → its sibling heads"),
        ("heads/cnn.py", "def f():\n    from ser.features.cache import CacheReader\n", "heads → its sibling features"),
        ("training/loop.py", "from ..studies import sweep\n", "training → studies"),
        ("training/loop.py", "from ser.finetune.config import FinetuneConfig\n", "training → finetune"),
        ("inference/predict.py", "from ser.finetune.run import run_finetune\n", "inference → its sibling finetune"),
        ("finetune/run.py", "from ser.inference.trained_model import load_trained\n", "finetune → its sibling inference"),
        ("distill/student.py", "from ser.inference import predict\n", "distill → its sibling inference"),
        ("training/run.py", "from ser.training.loop import _restore_rng\n", "imports the private _restore_rng"),
    ],
)
def test_a_planted_import_against_the_layering_is_caught(tmp_path, where, planted, expected):
    copy = copy_package(tmp_path)
    (copy / where).write_text((copy / where).read_text() + planted)
    found = layering_violations(copy)
    assert len(found) == 1 and expected in found[0], found


def test_a_sibling_import_that_the_init_docstring_allows_passes(tmp_path):
    copy = copy_package(tmp_path)
    (copy / "inference" / "predict.py").write_text((copy / "inference" / "predict.py").read_text()
                                                   + "from ser.finetune.run import run_finetune\n")
    init = copy / "inference" / "__init__.py"
    init.write_text(init.read_text().replace("May import: ", "May import: `ser.finetune` (to predict with a "
                                             "fine-tuned run's loader), "))
    assert layering_violations(copy) == []


def test_a_planted_circle_is_caught(tmp_path):
    copy = copy_package(tmp_path)
    (copy / "data" / "fold.py").write_text((copy / "data" / "fold.py").read_text()
                                           + "def f():\n    from ser.data.folds import make_folds\n")
    assert import_circles(copy) == [["ser.data.emobox", "ser.data.fold", "ser.data.folds"]]


def test_a_module_over_the_limit_is_caught(tmp_path):
    copy = tmp_path / "ser"
    copy.mkdir()
    (copy / "errors.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert layering_violations(copy) == [f"ser/errors.py: {MAX_LINES + 1} lines (at most {MAX_LINES})"]
