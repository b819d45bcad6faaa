"""pwfl's modules import one another without a cycle.

The graph is read from the source with ``ast``: an edge is a module-level import of
one pwfl module by another (``import pwfl.x``, ``from pwfl.x import y``, where y is
the module ``pwfl.x.y`` when there is one, else a name of ``pwfl.x``; a package's
``__init__`` counts as the package). Imports inside functions are not edges: they
run when called, which is how a module may reach one that imports it. Importing
``pwfl.x.y`` also runs the package ``pwfl.x`` first, so a module outside ``pwfl.x``
that imports it depends on that package too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "pwfl"

KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()
"""Cycles known to remain, each as the tuple of its modules from the smallest name;
this set must only shrink."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _runs(name: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """The pwfl modules that importing the module ``name`` from ``importer`` runs: the
    module, and the packages above it that are not above ``importer`` (those are
    already running when ``importer`` runs)."""
    parts = name.split(".")
    above = {".".join(parts[:i]) for i in range(1, len(parts))}
    running = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return ({name} | above) & set(modules) - running


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The pwfl modules ``module`` imports at module level."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: set[str] = set()
    # Module level: the statements of the body and of the if/try/with blocks and class
    # bodies in it, not those of functions.
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            for alias in node.names:
                edges |= _runs(alias.name, module, modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: package.count(".") + 2 - node.level]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # ``from pwfl.x import y``: the module pwfl.x.y if there is one, else
                # the name y of the module pwfl.x.
                target = f"{base}.{alias.name}"
                edges |= _runs(target if target in modules else base, module, modules)
        elif isinstance(node, ast.If) and _type_checking(node.test):
            todo.extend(node.orelse)  # imports for the type checker run nowhere
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo.extend(node.body)
            todo.extend(getattr(node, "orelse", []))
            todo.extend(getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)
        elif isinstance(node, ast.ClassDef):
            todo.extend(n for n in node.body if not isinstance(n, ast.FunctionDef))
    return edges - {module}


def _type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` tests ``TYPE_CHECKING`` (or ``typing.TYPE_CHECKING``)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph() -> dict[str, set[str]]:
    """Module -> the pwfl modules it imports at module level."""
    modules = _modules()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every elementary cycle's strongly connected set, one cycle per such set: each
    strongly connected component of more than one module (Tarjan's algorithm), given
    as one cycle through it, rotated to start at its smallest name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return {_one_cycle(graph, c) for c in components if len(c) > 1}


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> tuple[str, ...]:
    """A shortest cycle through the smallest module of a strongly connected set."""
    start = min(component)
    paths = {start: (start,)}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node]
                if nxt not in paths:
                    paths[nxt] = (*paths[node], nxt)
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def _shown(cycle: tuple[str, ...]) -> str:
    return " -> ".join((*cycle, cycle[0]))


def test_the_graph_reads_the_imports_it_should():
    graph = import_graph()
    assert "pwfl.config.loading" in graph["pwfl.config"]
    assert {"pwfl.config.experiment", "pwfl.config.validation"} <= graph["pwfl.config.loading"]
    assert "pwfl.config" in graph["pwfl.data"]
    # Imports inside functions are not edges: the runner builds the apps when it runs.
    assert "pwfl.apps.server_app" not in graph["pwfl.runner"]


def test_cycles_are_found_and_shown():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert cycles(graph) == {("a", "b", "c"), ("e", "e2")}
    assert _shown(("a", "b", "c")) == "a -> b -> c -> a"
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_pwfl_imports_without_a_cycle():
    found = cycles(import_graph())
    new = found - KNOWN_CYCLES
    assert not new, "import cycles: " + "; ".join(_shown(c) for c in sorted(new))
    gone = KNOWN_CYCLES - found
    assert not gone, "cycles gone, remove them from KNOWN_CYCLES: " + "; ".join(
        _shown(c) for c in sorted(gone)
    )


def test_the_config_package_reaches_only_the_light_modules_below_it():
    """Not even inside a function: the registry, not the implementing modules, gives
    the config its choice lists, so no import circle runs through the config. The one
    exception is the strategies, which check their own settings; they build on the
    config and are imported inside its validation (no edge of the graph), and they
    import neither Flower nor PyTorch (``test_config_imports.py``)."""
    modules = _modules()
    # pwfl.seeding is a leaf (NumPy and zlib): the config derives each task's data seed.
    light = {"pwfl.registry", "pwfl.errors", "pwfl.arithmetic", "pwfl.seeding", "pwfl.strategies"}
    for module, path in modules.items():
        if module != "pwfl.config" and not module.startswith("pwfl.config."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pwfl"):
                names = [f"{node.module}.{a.name}" for a in node.names]
                targets = {n if n in modules else node.module for n in names}
            elif isinstance(node, ast.Import):
                targets = {a.name for a in node.names if a.name.startswith("pwfl")}
            else:
                continue
            outside = {t for t in targets if not t.startswith("pwfl.config")} - light
            assert not outside, f"{module} imports {sorted(outside)}"
    graph = import_graph()
    reached, todo = set(), ["pwfl.config"]
    while todo:
        for nxt in graph[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    assert {m for m in reached if not m.startswith("pwfl.config.")} == light - {"pwfl.strategies"}
