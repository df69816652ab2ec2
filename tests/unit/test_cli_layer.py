"""The faces reach the database through services only."""

from __future__ import annotations

import ast
from pathlib import Path

import stackback.cli

SQL_STORE = ("stackback.store.sql", "stackback.store.models")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_cli_module_imports_the_sql_store() -> None:
    folder = Path(stackback.cli.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert modules
    for module in modules:
        found = _imports(module)
        leaked = {n for n in found if n.startswith(SQL_STORE) or n.endswith(".SqlStore")}
        assert not leaked, f"{module.name} imports {sorted(leaked)}"


def test_the_run_commands_call_the_run_service() -> None:
    source = (Path(stackback.cli.__file__).parent / "runs.py").read_text()
    assert "app.store" not in source and "app.runs." in source
