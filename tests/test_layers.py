"""The product's import graph: no circles, no upward imports, no test kit in the product.

The layers (also in docs/architecture.md, "Layers"), bottom to top — a package may import the
packages of the layers below it, never one of its own layer or above:

====  ===================================  ====================================================
 0    ``config``                           the YAML configuration (pydantic models)
 1    ``storage``                          DB, object store, segments and their chain, the
                                           shared vocabulary (``storage.common``) and the
                                           incident contract (``storage.incident``)
 2    ``capture``, ``analysis``,           the stages: video in, incidents out, evaluation
      ``sessions``                         sessions; peers that never import each other
 3    ``dashboard``                        the web app over the stages
 4    ``evalwatch``                        wiring: the hub, the CLI, the demo
====  ===================================  ====================================================

Test kits (``testkit/``) are not part of the product: no product module imports them (the
tests and the benchmarks do).  Every import counts, also ones inside functions or under
``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS: dict[str, int] = {
    "config": 0,
    "storage": 1,
    "capture": 2,
    "analysis": 2,
    "sessions": 2,
    "dashboard": 3,
    "evalwatch": 4,
}
TEST_KITS = ("testkit",)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Product module → the modules (product or test kit) it imports."""
    modules: dict[str, Path] = {}
    for pkg in LAYERS:
        for path in (ROOT / pkg).rglob("*.py"):
            modules[_module(path)] = path
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for name in names:
                top = name.split(".")[0]
                if top in TEST_KITS:
                    deps.add(name)
                elif top in LAYERS:
                    while name and name not in modules:  # a.b.Name → the module a.b
                        name = name.rpartition(".")[0]
                    if name and name != mod:
                        deps.add(name)
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles(import_graph()) == []


def test_no_upward_or_sideways_imports() -> None:
    bad = []
    for mod, deps in import_graph().items():
        src = mod.split(".")[0]
        for dep in deps:
            dst = dep.split(".")[0]
            if dst in TEST_KITS or dst == src:
                continue
            if LAYERS[dst] >= LAYERS[src]:
                bad.append(f"{mod} -> {dep} (layer {LAYERS[src]} -> {LAYERS[dst]})")
    assert bad == []


def test_product_does_not_import_test_kits() -> None:
    bad = [
        f"{mod} -> {dep}"
        for mod, deps in import_graph().items()
        for dep in deps
        if dep.split(".")[0] in TEST_KITS or dep.rpartition(".")[2] == "testing"
    ]
    assert bad == []
    assert not [p for pkg in LAYERS for p in (ROOT / pkg).rglob("testing.py")], "test kits belong in testkit/"


def test_the_graph_sees_the_imports() -> None:
    graph = import_graph()
    assert "storage.db" in graph["evalwatch.hub"] or "storage.db" in str(graph["evalwatch.hub"])
    assert "analysis.events" in graph["analysis.store"]
    assert "storage.models" in graph["analysis.store"]
