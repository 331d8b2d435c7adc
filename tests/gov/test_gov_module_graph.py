"""The modules of aegis_gov import each other without cycles, lazy and type-only imports included.

Importing ``aegis_gov.anything`` runs the package's ``__init__`` first, so an import cycle can
hide behind whichever order ``__init__`` happens to import in, or behind an import moved into a
function. Reading the import statements catches every cycle, whatever the order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aegis_gov

PACKAGE = "aegis_gov"
PACKAGE_DIR = Path(aegis_gov.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _imported_modules(path: Path) -> set[str]:
    """The aegis_gov modules *path* imports anywhere: top level, functions, TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(
                ".".join(alias.name.split(".")[:2])
                for alias in node.names
                if alias.name.split(".")[0] == PACKAGE
            )
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # the package is flat: relative imports stay inside it
                module = f"{PACKAGE}.{module}" if module else PACKAGE
            if module.split(".")[0] != PACKAGE:
                continue
            if module == PACKAGE:  # `from aegis_gov import _x` is a module, anything else __init__
                found.update(
                    f"{PACKAGE}.{alias.name}"
                    if (PACKAGE_DIR / f"{alias.name}.py").is_file()
                    else PACKAGE
                    for alias in node.names
                )
            else:
                found.add(".".join(module.split(".")[:2]))
    return found


def _import_graph() -> dict[str, set[str]]:
    graph = {_module_name(path): _imported_modules(path) for path in PACKAGE_DIR.glob("*.py")}
    return {module: imports - {module} for module, imports in graph.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle is not None:
            return cycle
    return None


def test_no_two_aegis_gov_modules_import_each_other() -> None:
    graph = _import_graph()
    # Guard against a scan that finds nothing: __init__ re-exports from the modules.
    assert f"{PACKAGE}._tools" in graph[PACKAGE]
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_lazy_and_type_only_imports_count(tmp_path: Path) -> None:
    module = tmp_path / "_example.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from aegis_gov._sandbox import SandboxConfig\n"
        "def f():\n"
        "    from aegis_gov._tools import ToolRegistry\n"
        "    import aegis_gov._shell.thing\n"
        "from . import _memory, OpenMultiAgent\n"
        "from ._results import RunResult\n"
        "from aegis_graph import Task\n",
        encoding="utf-8",
    )
    assert _imported_modules(module) == {
        "aegis_gov._sandbox",
        "aegis_gov._tools",
        "aegis_gov._shell",
        "aegis_gov._memory",
        "aegis_gov",
        "aegis_gov._results",
    }
