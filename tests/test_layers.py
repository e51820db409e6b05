"""The layers hold: no cycles between apps, no dynamic imports around them, no view that writes.

``lint-imports`` (``make test``, contracts in ``pyproject.toml``) checks that every app imports
only its own layer or lower ones (DESIGN.md "Apps and what they own"). Three things it does not
check are here:

- **No cycle between apps.** Its layers contract lets the four siblings (accounts, consent,
  exports, flags) import each other, in any direction. One direction is fine (flags may read
  consent); both directions is a cycle, and this test names the modules that form it. Read from
  grimp, the import graph import-linter itself builds.
- **No dynamic imports in app code** (``importlib.import_module``, ``apps.get_model``,
  ``__import__``): each would be an import the graph cannot see. Migrations are exempt: Django
  hands them historical models through ``apps.get_model``.
- **No view writes.** A view calls services and selectors (STYLE.md "Views"); an audited read
  is a service that records its access event in the same transaction. So no view module (every
  ``views.py`` and ``views/*.py``, and every ``api.py`` whose views take a token through
  ``core.api``) imports ``core.access_log``, ``transaction`` or a ``record_*`` of
  ``audit.services``, or calls ``.save()``, ``.create()``, ``.update()``, ``.delete()`` or
  ``.bulk_create()``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("core", "imaging", "audit", "accounts", "consent", "exports", "flags", "sharing", "proxies", "notices", "portal")
WRITES = frozenset({"save", "create", "update", "delete", "bulk_create"})
SHOWN = 3  # cycles, and imports per edge, named in a failure (the rest are counted)


def _app(module: str) -> str:
    return module.split(".")[0]


def _app_files(*, migrations: bool):
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if not migrations and "migrations" in path.relative_to(ROOT).parts:
                continue
            yield path


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


# --- Cycles between apps -------------------------------------------------------------------------


def _app_imports(graph: grimp.ImportGraph) -> dict[tuple[str, str], list[str]]:
    """(importing app, imported app) -> every import that makes that edge, as 'module:line -> module'."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if _app(importer) == _app(imported):
                continue
            details = graph.get_import_details(importer=importer, imported=imported)
            lines = ",".join(str(d["line_number"]) for d in details) or "?"
            edges[_app(importer), _app(imported)].append(f"{importer}:{lines} -> {imported}")
    return edges


def _cycles(edges) -> list[list[str]]:
    """Every elementary cycle of the app graph (eight nodes: a depth-first search is enough),
    each once, starting from its alphabetically first app."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(succ[node]):
            if nxt == start:
                found.append([*path, start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(succ):
        walk(start, start, [start])
    return found


def test_no_import_cycle_between_apps():
    graph = grimp.build_graph(*APPS, cache_dir=None)
    edges = _app_imports(graph)
    cycles = sorted(_cycles(edges), key=len)
    if not cycles:
        return
    report = []
    for cycle in cycles[:SHOWN]:
        report.append(" -> ".join(cycle))
        for a, b in pairwise(cycle):
            report += [f"    {line}" for line in edges[a, b][:SHOWN]]
            if len(edges[a, b]) > SHOWN:
                report.append(f"    ... and {len(edges[a, b]) - SHOWN} more imports of {b} by {a}")
    if len(cycles) > SHOWN:
        report.append(f"... and {len(cycles) - SHOWN} longer cycles")
    pytest.fail("apps import each other in a cycle (one direction must go):\n" + "\n".join(report), pytrace=False)


# --- Dynamic imports -----------------------------------------------------------------------------


def _dynamic_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "importlib" and any(
            a.name == "import_module" for a in node.names
        ):
            found.append(f"{_where(path, node)}: imports importlib.import_module")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("__import__", "import_module"):
                found.append(f"{_where(path, node)}: calls {func.id}()")
            elif isinstance(func, ast.Attribute) and func.attr in ("import_module", "get_model", "__import__"):
                found.append(f"{_where(path, node)}: calls .{func.attr}()")
    return found


def test_no_dynamic_imports_in_app_code():
    found = [line for path in _app_files(migrations=False) for line in _dynamic_imports(path)]
    if found:
        pytest.fail("a dynamic import hides a dependency from the layer contracts:\n" + "\n".join(found), pytrace=False)


# --- Views write nothing -------------------------------------------------------------------------


def _view_modules() -> list[Path]:
    paths = []
    for app in APPS:
        paths += [ROOT / app / "views.py", *sorted((ROOT / app / "views").glob("*.py"))]
        api = ROOT / app / "api.py"
        # API views are the functions core.api's decorator wraps (core/api.py is that decorator).
        if app != "core" and api.exists() and "api_endpoint" in api.read_text():
            paths.append(api)
    return [p for p in paths if p.exists()]


def _view_writes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    audit_services: set[str] = set()  # local names bound to audit.services
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [a.name for a in node.names]
            if module == "core.access_log" or (module == "core" and "access_log" in names):
                found.append(f"{_where(path, node)}: imports core.access_log")
            if module.startswith("django.db") and ("transaction" in names or module.startswith("django.db.transaction")):
                found.append(f"{_where(path, node)}: imports transaction")
            if module == "audit.services":
                found += [f"{_where(path, node)}: imports {n} from audit.services" for n in names if n.startswith("record_")]
            if module == "audit":
                audit_services |= {a.asname or a.name for a in node.names if a.name == "services"}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("core.access_log", "django.db.transaction"):
                    found.append(f"{_where(path, node)}: imports {alias.name}")
                if alias.name == "audit.services":
                    audit_services.add(alias.asname or "audit.services")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("record_"):
            owner = ast.unparse(node.value)
            if owner in audit_services or owner == "audit.services":
                found.append(f"{_where(path, node)}: uses audit.services.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
            found.append(f"{_where(path, node)}: calls {ast.unparse(node.func)}()")
    return found


def test_the_scan_finds_view_modules():
    names = {str(p.relative_to(ROOT)) for p in _view_modules()}
    assert {"accounts/views.py", "imaging/views.py", "portal/views.py", "audit/api.py", "consent/api.py"} <= names
    assert any(name.startswith("flags/views/") for name in names)


def test_no_view_writes():
    found = [line for path in _view_modules() for line in _view_writes(path)]
    if found:
        pytest.fail(
            "views call services and selectors; writes and access events belong to services:\n" + "\n".join(found),
            pytrace=False,
        )
