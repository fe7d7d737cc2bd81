"""framefarm's import graph, read with ``ast`` (nothing is imported), and the cycles in it.

Every ``import`` and ``from … import`` counts, at module level or inside a function: a lazy import is still a
dependency, and a cycle through one only waits for the call order that breaks it. An edge goes to the module named:
``from framefarm.pkg import module`` to the module, ``from framefarm.pkg import name`` to ``framefarm.pkg`` (its
``__init__``). Relative imports are resolved against the importing module's package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import framefarm

ROOT = Path(framefarm.__file__).parent  # the framefarm package folder


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(under: str = "framefarm", exclude: Iterable[str] = ()) -> dict[str, Path]:
    """Module name → file for every module of the package ``under``, less ``exclude`` (modules or whole packages)."""
    excluded = tuple(exclude)
    folder = ROOT.parent.joinpath(*under.split("."))
    found = {module_name(path): path for path in sorted(folder.rglob("*.py"))}
    return {name: path for name, path in found.items() if not _within(name, excluded)}


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` for every framefarm import in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name.startswith("framefarm")]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # from . import x / from ..pkg import y
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if not module.startswith("framefarm"):
                continue
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                # ``from package import module`` imports the module; ``from module import name`` the module.
                found.append((submodule, "", node.lineno) if submodule in known else (module, alias.name, node.lineno))
    return found


def dependency_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the modules (among ``known``) it imports; imports of modules outside ``known`` are left out."""
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _, _ in imports(path, known):
            if target in known and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(cycle: list[str], graph: dict[str, set[str]]) -> str:
    """A cycle as its edges (``a → b``), for an assertion message that says which imports to untangle."""
    members = set(cycle)
    return "; ".join(f"{source} → {target}" for source in cycle for target in sorted(graph[source] & members))
