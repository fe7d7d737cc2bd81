"""No import cycle anywhere in framefarm/, imports inside functions included (a lazy import is still a dependency:
a cycle through one only waits for the call order that breaks it). The commands print through
``framefarm.cli_output`` (not ``framefarm.cli``, which imports them), and the render flow requeues itself through
``framefarm.flows.farm_runs`` (not ``framefarm.flows.farm``, which deploys it).
"""

from __future__ import annotations

from tests.support.import_graph import cycles, dependency_graph, describe, modules

def test_no_import_cycle_in_framefarm():
    graph = dependency_graph(modules("framefarm"))
    # The walk sees the whole package, function-level imports too (report/__init__.py imports the encoder lazily).
    assert len(graph) > 80 and "framefarm.video.encode" in graph["framefarm.report"]
    found = cycles(graph)
    assert found == [], "\n".join(describe(cycle, graph) for cycle in found)


def test_relative_and_lazy_imports_are_edges(tmp_path, monkeypatch):
    """The reader itself, on a package written for the purpose: a cycle closed only by a relative import inside a
    function is found."""
    from tests.support import import_graph

    package = tmp_path / "framefarm"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("from framefarm.sub import b\n")
    (package / "sub" / "b.py").write_text("def later():\n    from .a import thing\n")
    monkeypatch.setattr(import_graph, "ROOT", package)
    graph = dependency_graph(modules("framefarm"))
    assert cycles(graph) == [["framefarm.sub.a", "framefarm.sub.b"]]
    assert describe(cycles(graph)[0], graph) == "framefarm.sub.a → framefarm.sub.b; framefarm.sub.b → framefarm.sub.a"
