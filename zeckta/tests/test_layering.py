"""The import graph holds the layering of docs/architecture.md: `zeckta` <- `workspaces` <- `senders` <-
`webhooks` <- `fraud` <- `otp` <- `relay` <- `twilioverify` <- `cockpit`.

An app imports only itself and the apps to its left, and no module takes part in an import cycle, not even
through an import inside a function. Every module of the apps is walked: code, tests, commands,
migrations. A failure names the file and line of each offending import.
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# Each may import those before it, never after.
LAYERS = ("zeckta", "workspaces", "senders", "webhooks", "fraud", "otp", "relay", "twilioverify", "cockpit")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the project module it loads, dotted
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.source} imports {self.target}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path, layers: tuple[str, ...]) -> dict[str, Path]:
    return {module_name(root, path): path for layer in layers for path in sorted((root / layer).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` loads (the longest dotted prefix that is one), or None for other packages."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(source: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every project module `source` imports, wherever the import statement stands (functions included).

    `from pkg import name` loads `pkg.name` when that is a module, else `pkg`; importing `a.b.c` also runs
    the `__init__` of `a` and `a.b`, so those are imported too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, source, path.name == "__init__.py")
            names = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            while target:
                if target != source and not source.startswith(f"{target}."):  # a package's own __init__
                    yield Import(source, target, path, node.lineno)
                target = _resolve(target.rpartition(".")[0], modules)


def import_graph(root: Path, layers: tuple[str, ...]) -> list[Import]:
    modules = project_modules(root, layers)
    found = (edge for source, path in modules.items() for edge in imports_of(source, path, modules))
    return list(dict.fromkeys(found))  # once each, in the order they stand


def upward_imports(graph: list[Import], layers: tuple[str, ...]) -> list[Import]:
    """Imports of a higher layer, each named once: by its module, not also by the packages around it."""
    rank = {layer: index for index, layer in enumerate(layers)}
    upward = [edge for edge in graph if rank[edge.target.split(".")[0]] > rank[edge.source.split(".")[0]]]
    return [
        edge
        for edge in upward
        if not any(
            other.target.startswith(f"{edge.target}.")
            for other in upward
            if (other.path, other.line) == (edge.path, edge.line)
        )
    ]


def import_cycles(graph: list[Import]) -> list[list[Import]]:
    """Each cycle among modules as the imports that close it (Tarjan's strongly connected components)."""
    edges: dict[str, list[Import]] = {}
    for edge in graph:
        edges.setdefault(edge.source, []).append(edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in edges.get(node, []):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [
        [edge for edge in graph if edge.source in component and edge.target in component] for component in components
    ]


def test_no_app_imports_an_app_above_it():
    upward = upward_imports(import_graph(settings.BASE_DIR, LAYERS), LAYERS)
    assert not upward, "imports against the layering:\n" + "\n".join(edge.where() for edge in upward)


def test_there_is_no_import_cycle():
    cycles = import_cycles(import_graph(settings.BASE_DIR, LAYERS))
    assert not cycles, "import cycles:\n" + "\n\n".join("\n".join(e.where() for e in cycle) for cycle in cycles)


def test_the_checks_find_an_upward_import_and_a_cycle_with_their_lines(tmp_path):
    """The checks above can fail: a small tree with one of each, found inside a function too."""
    for package in ("low", "high"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "low" / "a.py").write_text("import os\n\n\ndef later():\n    from high.b import thing\n")
    (tmp_path / "high" / "b.py").write_text("from . import c\n")
    (tmp_path / "high" / "c.py").write_text("x = 1\n\n\ndef later():\n    from high import b\n")

    graph = import_graph(tmp_path, ("low", "high"))

    assert [edge.where() for edge in upward_imports(graph, ("low", "high"))] == [
        f"{tmp_path / 'low' / 'a.py'}:5: low.a imports high.b",
    ]
    [cycle] = import_cycles(graph)
    assert {(edge.source, edge.target, edge.line) for edge in cycle} == {
        ("high.b", "high.c", 1),
        ("high.c", "high.b", 5),
    }
