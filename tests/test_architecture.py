"""The layering of DESIGN.md, checked: no import cycle, and arrows point down only.

A small AST walk over the packages ``ledger`` and ``web`` (no import of the code, no
dependency): every ``import``/``from … import`` of a project module is an edge of the
module graph, wherever it is written — at the top, inside a function (a lazy import is
still a dependency) or under ``if TYPE_CHECKING:`` (a type is a dependency too). An
``from ledger.x import y`` where ``y`` is a submodule is an edge to ``ledger.x.y``.
Importing a submodule does not add an edge to its package's ``__init__``: a package
importing its own submodules, and submodules importing siblings, is fine as long as
no cycle closes between modules.

The contracts are data (``CONTRACTS``): change them there, together with DESIGN.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "web")


# ------------------------------------------------------------------ the contracts


@dataclass(frozen=True)
class Contract:
    """What the modules under ``importers`` may import.

    ``forbidden``: project modules (and everything under them) they must not import;
    ``only``: if set, the project modules they may import (anything else of ours is a
    violation); ``forbidden_external``: third-party top-level packages they must not
    import; ``exempt``: importers the contract does not apply to; ``allowed``: single
    (importer, imported) pairs let through, each with the reason written down.
    """

    id: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    forbidden_external: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()
    allowed: Mapping[tuple[str, str], str] = field(default_factory=dict)


READ_SIDE = (
    "ledger.projections",
    "ledger.disputes",
    "ledger.reports",
    "ledger.integrity",
    "ledger.status",
)

CONTRACTS: tuple[Contract, ...] = (
    Contract(
        "domain-imports-only-domain",
        importers=("ledger.domain",),
        only=("ledger.domain",),
    ),
    Contract(
        "commands-import-only-domain",
        importers=("ledger.commands",),
        only=("ledger.domain",),
    ),
    Contract(
        "eventlog-reads-below-everything",
        importers=("ledger.eventlog",),
        forbidden=(
            "ledger.write",
            "ledger.application",
            "ledger.projections",
            "ledger.disputes",
            "ledger.integrity.service",
            "ledger.reports",
            "web",
            "ledger.cli",
            "ledger.demo",
        ),
    ),
    Contract(
        "read-side-does-not-reach-the-writer-or-interfaces",
        importers=READ_SIDE,
        forbidden=("ledger.application", "ledger.write", "ledger.cli", "ledger.demo", "web"),
        allowed={
            ("ledger.disputes.sweep", "ledger.write"): (
                "the sweep opens disputes nobody opened (unreceived shipments, returns "
                "claimed but never found): it records, so it goes through the one writer "
                "with commands like any interface does"
            ),
        },
    ),
    Contract(
        "write-side-does-not-import-interfaces",
        importers=("ledger.write",),
        forbidden=("web", "ledger.cli", "ledger.demo"),
    ),
    Contract(
        "ledger-does-not-import-web",
        importers=("ledger",),
        forbidden=("web",),
        allowed={
            ("ledger.cli.service", "web"): (
                "tongjie serve hosts the HTTP API: the command line is an interface above "
                "both, and builds the web app inside each gunicorn worker"
            ),
        },
    ),
    Contract(
        "only-main-imports-cli",
        importers=("ledger", "web"),
        forbidden=("ledger.cli",),
        exempt=("ledger.__main__", "ledger.cli"),
    ),
    Contract(
        "web-does-not-touch-storage",
        importers=("web",),
        forbidden=(
            "ledger.store",
            "ledger.recorder",
            "ledger.write.postgres",
            "ledger.write.recorder",
        ),
        forbidden_external=("psycopg", "psycopg_pool"),
    ),
)


# ------------------------------------------------------------------ the module graph


@dataclass(frozen=True)
class Import:
    """One import of one module by another, where it is written."""

    importer: str
    target: str  # a project module, or a third-party top-level package when external
    line: int
    statement: str
    external: bool = False

    def __str__(self) -> str:
        return f"{self.importer} line {self.line}: {self.statement}"


def _under(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def discover(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of the packages: dotted name → file."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_package(name: str, modules: Mapping[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The project module ``name`` denotes: itself, or its longest known prefix."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _statement(node: ast.AST, source: str) -> str:
    text = ast.get_source_segment(source, node) or ""
    return " ".join(text.split())


def _import_module_call(node: ast.Call) -> str | None:
    """``importlib.import_module("ledger.x")`` / ``import_module("ledger.x")``: a
    dependency spelled as a string."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """Every import in the file, at any depth (functions, TYPE_CHECKING blocks, try)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    roots = {m.split(".")[0] for m in modules}
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str, node: ast.AST) -> None:
        resolved = _resolve(target, modules)
        statement = _statement(node, source)
        if resolved is not None:
            imp = Import(module, resolved, node.lineno, statement)
        elif target.split(".")[0] not in roots:
            imp = Import(module, target.split(".")[0], node.lineno, statement, True)
        else:  # a module of ours that does not exist: the import fails at run time anyway
            return
        if imp not in found:  # "from ledger.x import a, b" is one import of ledger.x
            found.append(imp)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in modules else base, node)
        elif isinstance(node, ast.Call) and (target := _import_module_call(node)):
            add(target, node)
    return found


@dataclass
class Graph:
    modules: dict[str, Path]
    imports: list[Import]

    def edges(self) -> dict[str, dict[str, list[Import]]]:
        """importer → imported → the import statements (project modules only)."""
        out: dict[str, dict[str, list[Import]]] = {m: {} for m in self.modules}
        for imp in self.imports:
            if not imp.external:
                out[imp.importer].setdefault(imp.target, []).append(imp)
        return out


def build_graph(root: Path, packages: Iterable[str]) -> Graph:
    modules = discover(root, packages)
    imports = [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]
    return Graph(modules, imports)


def strongly_connected(edges: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with a cycle, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges.get(node, {}):
                        components.append(sorted(component))
    return sorted(components)


def cycle_path(edges: Mapping[str, Mapping[str, object]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module, as a closed path."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(edges.get(node, {})):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")  # pragma: no cover


def describe_cycle(edges: Mapping[str, Mapping[str, list[Import]]], component: list[str]) -> str:
    """One path round the cycle, then every import between the component's modules
    (to break the cycle, some of them must go)."""
    path = cycle_path(edges, component)
    lines = [f"cycle {' → '.join(path)}", f"  among {', '.join(component)}; their imports:"]
    for a in component:
        for b in sorted(edges[a]):
            if b in component:
                lines += [f"    {imp}  →  {b}" for imp in edges[a][b]]
    return "\n".join(lines)


def violations(graph: Graph, contract: Contract) -> list[Import]:
    """The imports that break the contract."""
    out: list[Import] = []
    for imp in graph.imports:
        if not _under(imp.importer, contract.importers) or _under(imp.importer, contract.exempt):
            continue
        if imp.external:
            if imp.target in contract.forbidden_external:
                out.append(imp)
            continue
        if imp.target == imp.importer:
            continue
        if any(
            _under(imp.importer, (importer,)) and _under(imp.target, (imported,))
            for importer, imported in contract.allowed
        ):
            continue
        bad = _under(imp.target, contract.forbidden)
        if contract.only is not None and not _under(imp.target, contract.only):
            bad = True
        if bad:
            out.append(imp)
    return out


# ------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(ROOT, PACKAGES)


def test_the_walk_sees_the_project(graph: Graph) -> None:
    """A walk that finds nothing proves nothing: the packages are where we look."""
    assert len(graph.modules) > 50, sorted(graph.modules)
    assert {"ledger.domain.items", "ledger.projections", "web"} <= set(graph.modules)
    assert sum(not imp.external for imp in graph.imports) > 100


def test_no_import_cycle(graph: Graph) -> None:
    edges = graph.edges()
    cycles = [describe_cycle(edges, c) for c in strongly_connected(edges)]
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(cycles)


def test_every_contract_applies_to_some_module(graph: Graph) -> None:
    """A contract over modules that were moved or renamed checks nothing: say so."""
    idle = {
        c.id: prefix
        for c in CONTRACTS
        for prefix in c.importers
        if not any(_under(m, (prefix,)) for m in graph.modules)
    }
    assert not idle, f"contracts naming modules that do not exist (moved?): {idle}"


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c.id for c in CONTRACTS])
def test_layer_contract(graph: Graph, contract: Contract) -> None:
    found = violations(graph, contract)
    assert not found, f"{contract.id}: {len(found)} import(s) break it:\n" + "\n".join(
        f"  {imp}  →  {imp.target}" for imp in found
    )


# ------------------------------------------------------------------ the checker, checked


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a, b\n",  # a package importing its own: fine
            "pkg/a.py": "from pkg.b import helper\n",
            "pkg/b.py": "def helper():\n    from . import a\n    return a\n",
            "pkg/c.py": "from pkg import b\n",  # into the cycle, not part of it
        },
    )
    graph = build_graph(tmp_path, ["pkg"])
    edges = graph.edges()
    components = strongly_connected(edges)
    assert components == [["pkg.a", "pkg.b"]]
    assert cycle_path(edges, components[0]) == ["pkg.a", "pkg.b", "pkg.a"]
    message = describe_cycle(edges, components[0])
    assert "cycle pkg.a → pkg.b → pkg.a" in message
    assert "pkg.a line 1: from pkg.b import helper" in message
    assert "pkg.b line 2: from . import a" in message
    assert "pkg.c" not in message


def test_checker_resolves_submodules_relative_imports_and_type_checking(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from .inner import x\n",
            "pkg/sub/inner.py": "x = 1\n",
            "pkg/sub/deep.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..top import y\n"
            ),
            "pkg/top.py": (
                "import psycopg\n"
                "from pkg import sub\n"
                "from pkg.sub import inner, x\n"
                "import importlib\n"
                "m = importlib.import_module('pkg.sub.inner')\n"
                "y = 2\n"
            ),
        },
    )
    graph = build_graph(tmp_path, ["pkg"])
    edges = graph.edges()
    assert set(edges["pkg.sub"]) == {"pkg.sub.inner"}
    assert set(edges["pkg.sub.deep"]) == {"pkg.top"}
    assert set(edges["pkg.top"]) == {"pkg.sub", "pkg.sub.inner"}
    assert [imp.line for imp in edges["pkg.top"]["pkg.sub.inner"]] == [3, 5]
    assert not strongly_connected(edges)
    external = {imp.target for imp in graph.imports if imp.external}
    assert {"psycopg", "typing", "importlib"} <= external


def test_checker_finds_layer_violations(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/domain/__init__.py": "",
            "app/domain/model.py": "def f():\n    from app.web import views\n",
            "app/store.py": "",
            "app/web/__init__.py": "",
            "app/web/views.py": (
                "import psycopg\nfrom app.domain import model\nfrom app import store\n"
            ),
        },
    )
    graph = build_graph(tmp_path, ["app"])
    pure = Contract("pure", importers=("app.domain",), only=("app.domain",))
    storage = Contract(
        "no-storage",
        importers=("app.web",),
        forbidden=("app.store",),
        forbidden_external=("psycopg",),
    )
    [bad] = violations(graph, pure)
    assert (bad.importer, bad.target, bad.line) == ("app.domain.model", "app.web.views", 2)
    assert str(bad) == "app.domain.model line 2: from app.web import views"
    assert {(v.target, v.line) for v in violations(graph, storage)} == {
        ("psycopg", 1),
        ("app.store", 3),
    }
    allowed = Contract(
        "pure-but",
        importers=("app.domain",),
        only=("app.domain",),
        allowed={("app.domain.model", "app.web"): "because"},
    )
    assert violations(graph, allowed) == []
