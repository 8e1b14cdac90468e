"""The rules of the house (GUIDE.md §1), checked on the source: who may import whom, and no cycles.

Every ``import`` counts, also the ones inside functions: a lazy import still ties the rooms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "segapp"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # submodules imported by name
    return out


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
IMPORTS = {m: _imports(p) for m, p in MODULES.items()}


def _internal(names: set[str]) -> set[str]:
    return {n for n in names if n in MODULES}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _imports_of(room: str) -> dict[str, set[str]]:
    return {m: names for m, names in IMPORTS.items() if _room(m) == room}


def _violations(room: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for module, names in _imports_of(room).items():
        for name in sorted(names):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{module} imports {name}")
    return bad


def test_the_walk_sees_the_rooms():
    assert {"io", "data", "nets", "lit", "inference", "eval", "cli", "ablation"} <= {_room(m) for m in MODULES}
    assert "segapp.io.images" in IMPORTS["segapp.data.dataset"] or any(
        n.startswith("segapp.io") for n in IMPORTS["segapp.data.dataset"]
    )


def test_io_imports_nothing_else_of_segapp():
    bad = [
        f"{m} imports {n}"
        for m, names in _imports_of("io").items()
        for n in names
        if n.startswith("segapp") and not n.startswith("segapp.io")
    ]
    assert not bad, bad


def test_nets_never_import_lightning_or_data():
    assert not _violations("nets", ("lightning", "pytorch_lightning", "segapp.data", "segapp.lit", "albumentations"))


def test_inference_never_imports_training_code():
    forbidden = ("lightning", "pytorch_lightning", "albumentations", "segapp.data", "segapp.lit", "segapp.ablation")
    assert not _violations("inference", forbidden)


def test_nothing_below_cli_imports_cli():
    bad = [
        f"{m} imports {n}"
        for m, names in IMPORTS.items()
        if _room(m) != "cli"
        for n in names
        if n == "segapp.cli" or n.startswith("segapp.cli.")
    ]
    assert not bad, bad


def _cycle() -> list[str] | None:
    """One import cycle among segapp's modules (a package's ``__init__`` importing its own
    submodules is not an edge back from them), or None."""
    graph = {m: {n for n in _internal(names) if n != m and not m.startswith(n + ".")} for m, names in IMPORTS.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_in_segapp():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_product_module_matches_pytests_test_glob(module):
    assert not MODULES[module].name.startswith("test_"), MODULES[module]
