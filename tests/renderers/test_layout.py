"""The renderers' layout, read with ``ast``: no import cycle among ``framefarm/renderers`` (imports inside functions
count: a lazy import is still a dependency), no module importing another's underscore-private names, and the job
kinds on top of the shared diffusion core never importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

import framefarm

ROOT = Path(framefarm.__file__).parent
PACKAGE = "framefarm.renderers"
KINDS = ("framefarm.renderers.diffusers.kinds.video2video", "framefarm.renderers.diffusers.kinds.deforum",
         "framefarm.renderers.diffusers.kinds.animatediff")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / "renderers").rglob("*.py"))}


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` for every framefarm import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name.startswith("framefarm")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("framefarm"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                # ``from package import module`` imports the module; ``from module import name`` the module.
                found.append((submodule, "", node.lineno) if submodule in known else
                             (node.module, alias.name, node.lineno))
    return found


def dependency_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _, _ in imports(path, known):
            if target in known and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
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


def test_no_import_cycle_among_the_renderers():
    graph = dependency_graph()
    assert len(graph) > 30 and graph["framefarm.renderers.diffusers.denoise"]  # the walk sees the modules
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_names():
    known = modules()
    private = [f"{known[name].relative_to(ROOT.parent)}:{line} imports {target}.{imported}"
               for name, path in known.items() for target, imported, line in imports(path, known)
               if imported.startswith("_") and target != name]
    assert private == []


def test_the_kinds_never_import_each_other():
    graph = dependency_graph()
    crossing = [(source, target) for source in graph for target in graph[source]
                for kind in KINDS for other in KINDS
                if kind != other and (source == kind or source.startswith(kind + "."))
                and (target == other or target.startswith(other + "."))]
    assert crossing == []
