"""The package's layout tells the pipeline: stages in layers, each importing only from its own
layer or those below, no import cycles, and each I/O edge in one module."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "exporter"

# Lowest first. A module may import from its own layer or a lower one, never a higher one.
LAYERS: list[tuple[str, ...]] = [
    ("exporter", "exporter.model", "exporter.logs", "exporter.checkpoint"),
    ("exporter.history", "exporter.config"),
    ("exporter.emit", "exporter.schedule"),
    ("exporter.aws",),
    ("exporter.daemon", "exporter.translate", "exporter.preflight"),
    ("exporter.app",),
    ("exporter.demo", "exporter.cli", "exporter.__main__"),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """The exporter modules a file imports, at any depth (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("exporter"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("exporter"))
    return names


def layer(module: str) -> int:
    best, level = -1, -1
    for index, members in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) > best:
                best, level = len(member), index
    assert level >= 0, f"{module} is in no layer: add it to LAYERS"
    return level


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {dep for dep in imports(path) if dep in known and dep != name} for name, path in known.items()
    }


def test_every_module_imports_only_from_its_layer_or_below() -> None:
    upward = [
        f"{module} (layer {layer(module)}) imports {dep} (layer {layer(dep)})"
        for module, deps in graph().items()
        for dep in deps
        if layer(dep) > layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_there_are_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_each_io_edge_is_one_module() -> None:
    """AWS clients are made in one module, SQLite is opened in one, OTLP exporters are built in
    one and the HTTP endpoints are served from one."""
    edges = {"create_client(": "exporter.aws.source", "import sqlite3": "exporter.checkpoint",
             "OTLPSpanExporter": "exporter.emit.otlp", "web.TCPSite": "exporter.emit.web"}  # fmt: skip
    for needle, owner in edges.items():
        users = sorted(name for name, path in modules().items() if needle in path.read_text())
        assert users == [owner], f"{needle!r} in {users}, expected only {owner}"


def test_the_readme_module_table_names_every_module() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [
        str(path.relative_to(REPO))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py") and f"`{path.relative_to(REPO)}`" not in readme
    ]
    assert not missing, f"not in the README's module table: {missing}"
