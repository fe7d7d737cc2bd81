"""The renderers' layout, read with ``ast``: no import cycle among ``framefarm/renderers`` (imports inside functions
count: a lazy import is still a dependency), no module importing another's underscore-private names, and the job
kinds on top of the shared diffusion core never importing each other."""

from __future__ import annotations

from tests.support.import_graph import ROOT, cycles, dependency_graph, imports, modules

PACKAGE = "framefarm.renderers"
KINDS = ("framefarm.renderers.diffusers.kinds.video2video", "framefarm.renderers.diffusers.kinds.deforum",
         "framefarm.renderers.diffusers.kinds.animatediff")


def test_no_import_cycle_among_the_renderers():
    graph = dependency_graph(modules(PACKAGE))
    assert len(graph) > 30 and graph["framefarm.renderers.diffusers.denoise"]  # the walk sees the modules
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_names():
    known = modules(PACKAGE)
    private = [f"{known[name].relative_to(ROOT.parent)}:{line} imports {target}.{imported}"
               for name, path in known.items() for target, imported, line in imports(path, known)
               if imported.startswith("_") and target != name]
    assert private == []


def test_the_kinds_never_import_each_other():
    graph = dependency_graph(modules(PACKAGE))
    crossing = [(source, target) for source in graph for target in graph[source]
                for kind in KINDS for other in KINDS
                if kind != other and (source == kind or source.startswith(kind + "."))
                and (target == other or target.startswith(other + "."))]
    assert crossing == []
