"""The dependency rule of the package, read from its source: no upward import, no cycle.

Layers, lowest first; a module may import its own layer and those below:

- base: ``errors``, ``config``, ``vocabulary``, ``threads``, ``provenance``
- ``db``
- ``analysis``, ``io``, ``mlff`` (numerics, file formats, force fields); ``mlff``
  imports nothing from ``db`` either, so force-field code runs without a database
- ``queries`` and ``demo`` (the demo dataset builder)
- ``services``
- ``cli`` and ``serve`` (the web layer)
- the package root (``atlas2d.load``), an edge like the CLI

Imports inside functions count too: a lazy import is still a dependency. Services hold
use cases only: they neither build SQL (``sqlalchemy.text``) nor decode column bytes
(``atlas2d.db.types``); queries return decoded values.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "platform" / "atlas2d"

LAYERS = {
    "errors": 0,
    "config": 0,
    "vocabulary": 0,
    "threads": 0,
    "read_ahead": 0,
    "provenance": 0,
    "db": 1,
    "analysis": 2,
    "io": 2,
    "mlff": 2,
    "queries": 3,
    "demo": 3,
    "services": 4,
    "cli": 5,
    "serve": 5,  # the web layer, beside the CLI
    "": 6,
}
FORBIDDEN = {"mlff": {"db", "queries", "services", "cli", "demo"}}
"""Packages that may not import some packages even where the layers would allow it."""


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its body (a ``from package
    import module`` counts as the module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # Each imported name is a module of its own, or a name in module `base`.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def layer_of(module: str) -> tuple[str, int]:
    package = module.split(".")[1] if "." in module else ""
    if package not in LAYERS:
        raise KeyError(f"{module}: its package {package!r} has no layer; add it to LAYERS")
    return package, LAYERS[package]


def violations(package_dir: Path) -> list[str]:
    """Every upward or forbidden import, and every import cycle, as a sentence."""
    modules = module_files(package_dir)
    graph = {name: imported_modules(path, name, modules) for name, path in modules.items()}
    found = []
    for name, targets in sorted(graph.items()):
        package, layer = layer_of(name)
        for target in sorted(targets):
            target_package, target_layer = layer_of(target)
            if target_layer > layer:
                found.append(f"{name} imports {target} (upward: {package} below {target_package})")
            elif target_package in FORBIDDEN.get(package, set()):
                found.append(f"{name} imports {target} ({package} never imports {target_package})")
    found.extend(f"import cycle: {' → '.join(cycle)}" for cycle in cycles(graph))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


SERVICE_FORBIDDEN_NAMES = {("sqlalchemy", "text"), ("atlas2d.db.types", None)}
"""(module, name) a service may not import; None: nothing from that module."""


def sql_or_decoding_in_services(package_dir: Path) -> list[str]:
    """Service modules that import SQL text or the column codecs, or run SQL text some
    other way (``sa.text(…)`` through a module import, ``exec_driver_sql``)."""
    found = []
    for path in sorted((package_dir / "services").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    for module, name in SERVICE_FORBIDDEN_NAMES:
                        if node.module == module and name in (None, alias.name):
                            found.append(f"services/{path.name} imports {module}.{alias.name}")
            elif isinstance(node, ast.Import):
                found.extend(
                    f"services/{path.name} imports {alias.name}"
                    for alias in node.names
                    if alias.name in ("sqlalchemy", "atlas2d.db.types")
                )
            elif isinstance(node, ast.Attribute) and node.attr == "exec_driver_sql":
                found.append(f"services/{path.name} calls exec_driver_sql")
    return found


def test_the_package_has_no_upward_import_and_no_cycle() -> None:
    assert violations(PACKAGE_DIR) == []


def test_services_neither_build_sql_nor_decode_bytes() -> None:
    assert sql_or_decoding_in_services(PACKAGE_DIR) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "atlas2d" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "atlas2d"


def test_the_rule_finds_an_upward_import_a_forbidden_one_and_a_cycle(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "__init__.py": "",
            "services/__init__.py": "",
            "services/relax.py": "def f():\n    from atlas2d.services import relax_dask\n",
            "services/relax_dask.py": "from atlas2d.services.relax import f\n",
            "queries/__init__.py": "",
            "queries/frames.py": "from atlas2d.services import relax\n",
            "mlff/__init__.py": "",
            "mlff/load.py": "from ..db.models import Base\n",
            "db/__init__.py": "",
            "db/models.py": "Base = object\n",
            "db/session.py": "from atlas2d import errors, services\n",
            "errors.py": "",
        },
    )
    assert violations(package) == [
        "atlas2d.db.session imports atlas2d.services (upward: db below services)",
        "atlas2d.mlff.load imports atlas2d.db.models (mlff never imports db)",
        "atlas2d.queries.frames imports atlas2d.services.relax (upward: queries below services)",
        "import cycle: atlas2d.services.relax → atlas2d.services.relax_dask",
    ]


def test_the_service_rule_finds_sql_text_and_column_decoding(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "services/a.py": "from sqlalchemy import select, text\n",
            "services/b.py": "def f():\n    from atlas2d.db.types import vec3_from_bytes\n",
            "services/c.py": "from sqlalchemy.orm import Session\n",
            "services/d.py": "import sqlalchemy as sa\n",
            "services/e.py": "def f(connection):\n    connection.exec_driver_sql('DELETE')\n",
        },
    )
    assert sql_or_decoding_in_services(package) == [
        "services/a.py imports sqlalchemy.text",
        "services/b.py imports atlas2d.db.types.vec3_from_bytes",
        "services/d.py imports sqlalchemy",
        "services/e.py calls exec_driver_sql",
    ]


def test_a_package_without_a_layer_is_refused(tmp_path: Path) -> None:
    package = _write(tmp_path, {"__init__.py": "", "web/__init__.py": "", "web/app.py": ""})
    with pytest.raises(KeyError, match="'web' has no layer"):
        violations(package)
