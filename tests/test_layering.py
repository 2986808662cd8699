"""The layering of DESIGN.md section 8, checked on the source.

- SQL is spoken only in :mod:`openkb.registry`: nothing else reaches for the
  registry's connection or runs a statement.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "openkb"
REGISTRY = PACKAGE / "registry"

# A statement passed to execute*(): the string starts with an SQL verb.
_SQL = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|BEGIN|"
                  r"COMMIT|ROLLBACK|SAVEPOINT|RELEASE|VACUUM|WITH)\b", re.IGNORECASE)


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _string_start(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _string_start(node.values[0])
    return None


def _sql_uses(source: str, name: str) -> list[str]:
    """Where a module runs SQL or reaches the registry's connection."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in ("conn", "_conn"):
            owner = ast.unparse(node.value)
            if "registry" in owner.lower() or "writer" in owner.lower():
                found.append(f"{where}: {owner}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            if method in ("execute", "executemany", "executescript") and node.args:
                text = _string_start(node.args[0])
                if text is not None and _SQL.match(text):
                    found.append(f"{where}: {method}({text[:40]!r}...)")
            elif method == "connect" and ast.unparse(node.func.value) == "sqlite3":
                found.append(f"{where}: sqlite3.connect")
    return sorted(found, key=lambda use: int(use.split(":")[1]))


def test_sql_is_spoken_only_in_the_registry() -> None:
    found = [use for path in _modules(PACKAGE) if REGISTRY not in path.parents
             for use in _sql_uses(path.read_text(encoding="utf-8"), _rel(path))]
    assert not found, "SQL outside openkb/registry/:\n" + "\n".join(found)


def test_the_sql_check_catches_statements_and_connections_only() -> None:
    sample = (
        'registry.conn.execute("SELECT 1")\n'
        'self._conn.execute(f"PRAGMA {pragma}")\n'
        'kb.registry._conn.commit()\n'
        'conn = sqlite3.connect(path)\n'
        'run.execute(inputs)\n'  # not SQL: an object with an execute method
        'worker.conn.send(task)\n'  # not the registry's: a pipe to a worker
    )
    found = _sql_uses(sample, "sample")
    assert [use.split(":")[1] for use in found] == ["1", "1", "2", "3", "4"], found


def test_no_registry_module_is_over_400_lines() -> None:
    for path in _modules(REGISTRY):
        assert len(path.read_text().splitlines()) < 400, _rel(path)
