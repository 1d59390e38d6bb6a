"""The shape of the code: no import cycles, SQL only in the store, and a service function for every
operation of the model."""
from __future__ import annotations

import ast

from emulator import services
from emulator.api.servicemodel import service_model
from tests.unit.import_graph import ROOT, cycles, import_graph, imports_of, module_files


def test_no_import_cycles_in_emulator():
    """Function-level and type-only imports count too (see import_graph.py)."""
    assert cycles(import_graph(packages=["emulator"])) == []


def test_no_import_cycles_in_engine():
    """Function-level and type-only imports count too (see import_graph.py)."""
    assert cycles(import_graph(packages=["engine"])) == []


def test_only_the_store_talks_to_the_database():
    """No module outside emulator/store imports a database driver or SQLAlchemy: services and the
    console reach the metadata through the store's repositories."""
    drivers = ("sqlite3", "sqlalchemy", "psycopg", "alembic")
    offenders = []
    for module, path in module_files().items():
        if module == "emulator.store" or module.startswith("emulator.store."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{module}: {name}" for name in names if name.split(".")[0] in drivers]
    assert offenders == []


def test_the_cycle_finder_finds_cycles(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg import a\n")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (package / "c.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_the_graph_covers_both_packages():
    files = module_files()
    assert "emulator.app" in files and "engine.model" in files
    assert "emulator.api.dispatch" in imports_of("emulator.app", ROOT / "emulator" / "app.py", set(files))


def test_every_operation_of_the_service_model_has_a_handler():
    registry = services.registry()
    assert registry.missing() == []
    for name in service_model().operation_names:
        assert callable(registry.get(name)), name
