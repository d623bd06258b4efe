"""The package's structure: no module imports, even inside a function, a module that imports it back."""

from __future__ import annotations

import ast
import importlib.util

from rs_repro.pipeline import paths


def _imports() -> dict[str, set[str]]:
    """Each module of the package to the package modules it imports anywhere in its code."""
    files = {}
    for path in paths.PACKAGE.rglob("*.py"):
        parts = path.relative_to(paths.ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = (importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level
                        else node.module or "")
                found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {module for module in found if module in files and module not in (name, "rs_repro")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Some cycle of ``graph`` as the list of its modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                return path[path.index(other):] + [module, other] if other in path else [module, other]
            if other not in state and (found := visit(other, [*path, module])):
                return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [])):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_a_module_that_imports_it_back():
    graph = _imports()
    assert {"rs_repro.pipeline.provenance", "rs_repro.chapters.common", "rs_repro.attacks.hsja"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
