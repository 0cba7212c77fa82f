"""The architecture's directions, read from the imports of every module.

- ``kernels/`` imports nothing from ``core/``, ``gui/`` or ``benchmarks/``: array kernels
  know nothing of graphs or users.
- ``core/`` imports nothing from ``gui/`` or ``benchmarks/`` (and never Qt): choosing the
  editor or a sub-command is ``main.py``'s job.
- No import cycle among the modules of ``core/``.
- CuPy is imported by ``kernels/backend.py`` alone, numba by ``kernels/jit.py`` alone.

Every import counts, also one inside a function (it runs when the function does), except
those under ``if TYPE_CHECKING:``, which never run.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "kernels", "gui", "benchmarks")
QT = ("PySide6", "pyqtgraph", "shiboken6")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
MODULES["main"] = ROOT / "main.py"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the statements under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    skip |= {id(n) for n in ast.walk(stmt)}
    return skip


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports: project modules by their dotted name, others by their
    top-level package."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name if alias.name in MODULES else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..a import b
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                if sub in MODULES:
                    out.add(sub)
                elif mod in MODULES:
                    out.add(mod)
                else:
                    out.add(mod.split(".")[0])
    out.discard(name)
    return out


IMPORTS = {name: imports_of(name) for name in MODULES}


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_reader_sees_every_kind_of_import():
    # the rules below are only as good as this reader: it must find each form
    assert "core.errors" in IMPORTS["core.validate"]  # from core.errors import ...
    assert "core.catalogue" in IMPORTS["core.validate"]  # from core import catalogue
    assert "kernels.backend" in IMPORTS["core.network"]  # from kernels import backend
    assert "numpy" in IMPORTS["kernels.backend"]  # import numpy as np
    assert "gui.main_window" in IMPORTS["main"]  # an import inside a function


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) == "kernels"))
def test_kernels_import_nothing_of_the_application(name):
    bad = sorted(m for m in IMPORTS[name] if _top(m) in ("core", "gui", "benchmarks"))
    assert not bad, f"{name} imports {', '.join(bad)}: kernels know no graphs and no users"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) == "core"))
def test_core_imports_no_gui_no_benchmarks_and_no_qt(name):
    bad = sorted(m for m in IMPORTS[name] if _top(m) in ("gui", "benchmarks") + QT)
    assert not bad, f"{name} imports {', '.join(bad)}: core/ must run without the editor"


@pytest.mark.parametrize("library, owner", [("cupy", "kernels.backend"), ("numba", "kernels.jit")])
def test_one_module_imports_each_optional_accelerator(library, owner):
    importers = sorted(n for n, deps in IMPORTS.items() if library in deps)
    assert importers == [owner], f"{library} is imported by {importers}, only {owner} may"


def test_core_has_no_import_cycle():
    g = nx.DiGraph()
    for name, deps in IMPORTS.items():
        if _top(name) == "core":
            g.add_node(name)
            g.add_edges_from((name, d) for d in deps if _top(d) == "core")
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, "import cycles in core/: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_a_cycle_and_a_wrong_direction_would_be_found():
    # the checks above on a made-up import table, so that they can be seen to fail
    table = {"core.a": {"core.b"}, "core.b": {"core.a"}, "kernels.k": {"core.errors"}}
    g = nx.DiGraph((n, d) for n, deps in table.items() for d in deps if _top(n) == "core")
    assert [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert any(_top(d) == "core" for d in table["kernels.k"])


def _type_names() -> set[str]:
    from core import catalogue
    return set(catalogue.types())


def _names_in(node: ast.AST, types: set[str]) -> set[str]:
    """The node type names a comparison operand spells out: "Dense", or ("Input", "Target")."""
    if isinstance(node, ast.Constant) and node.value in types:
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names_in(e, types) for e in node.elts)) if node.elts else set()
    return set()


def type_name_tests(name: str, types: set[str]) -> list[str]:
    """Where module ``name`` compares something with a node type name, or keys a table by
    one: knowledge of a type that belongs to its Layer class."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            spelled = set().union(*(_names_in(x, types) for x in [node.left, *node.comparators]))
        elif isinstance(node, ast.Dict):
            spelled = set().union(*(_names_in(k, types) for k in node.keys if k is not None))
        else:
            continue
        if spelled:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {', '.join(sorted(spelled))}")
    return found


def test_no_node_type_is_told_apart_by_its_name_outside_its_layer():
    types = _type_names()
    outside = [n for n in MODULES if _top(n) in ("core", "gui", "kernels")
               and not n.startswith("core.layers")]
    found = [f for n in sorted(outside) for f in type_name_tests(n, types)]
    assert not found, ("compare a class attribute or call a Layer method instead: "
                       + "; ".join(found))


def test_a_type_name_test_would_be_found(tmp_path, monkeypatch):
    src = 'def f(layer):\n    return layer.type_name in ("Input", "Target")\n'
    (tmp_path / "probe.py").write_text(src)
    monkeypatch.setitem(MODULES, "probe", tmp_path / "probe.py")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert type_name_tests("probe", _type_names()) == ["probe.py:2 Input, Target"]
