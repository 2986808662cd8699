"""The layering of DESIGN.md section 8, checked on the source.

- The CLI reaches the library only through :mod:`openkb.api` (and
  ``openkb.__version__``), and importing it does not load the converters.
- Only the CLI imports typer or rich.
- SQL is spoken only in :mod:`openkb.registry`: nothing else reaches for the
  registry's connection or runs a statement.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "openkb"
CLI = PACKAGE / "cli"
REGISTRY = PACKAGE / "registry"
UI_LIBRARIES = ("typer", "rich", "click")

# A statement passed to execute*(): the string starts with an SQL verb.
_SQL = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|BEGIN|"
                  r"COMMIT|ROLLBACK|SAVEPOINT|RELEASE|VACUUM|WITH)\b", re.IGNORECASE)


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a module, nested ones included;
    ``from openkb import api`` counts as ``openkb.api``."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found += [(node.lineno, f"{base}.{alias.name}" if base == "openkb" else base)
                      for alias in node.names]
    return found


def _cli_reaches_past_the_api(module: str) -> bool:
    if module != "openkb" and not module.startswith("openkb."):
        return False
    return not (module in ("openkb.__version__", "openkb.api", "openkb.cli")
                or module.startswith("openkb.cli."))


def test_the_cli_imports_the_library_only_through_the_api() -> None:
    found = [f"{_rel(path)}:{line}: {module}" for path in _modules(CLI)
             for line, module in _imports(path) if _cli_reaches_past_the_api(module)]
    assert not found, "the CLI reaches past openkb.api:\n" + "\n".join(found)


def test_the_import_check_reads_every_spelling() -> None:
    assert _cli_reaches_past_the_api("openkb.registry")
    assert _cli_reaches_past_the_api("openkb.progress_summary")
    assert not _cli_reaches_past_the_api("openkb.api")
    assert not _cli_reaches_past_the_api("openkb.cli.render")
    assert not _cli_reaches_past_the_api("orjson")
    imports = {module for _, module in _imports(CLI / "app.py")}
    assert {"openkb.__version__", "openkb.api", "openkb.cli", "openkb.cli.session"} <= imports


def test_only_the_cli_imports_typer_or_rich() -> None:
    found = [f"{_rel(path)}:{line}: {module}" for path in _modules(PACKAGE)
             if CLI not in path.parents
             for line, module in _imports(path) if module.split(".")[0] in UI_LIBRARIES]
    assert not found, "UI libraries outside openkb/cli:\n" + "\n".join(found)


def test_starting_the_cli_does_not_load_the_converters() -> None:
    """A read-only command must not pay for pypdf and markdown-it at start-up."""
    heavy = ("pypdf", "markdown_it", "openkb.ingest.run", "openkb.prepare.stage")
    probe = ("import sys, openkb.cli.app; "
             f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=True, timeout=60)
    assert result.stdout.split() == []


def test_a_search_loads_neither_the_writing_path_nor_pydantic(kb: Path) -> None:
    """`openkb search` answers in a fraction of a second on a big KB only if
    start-up stays small: it runs no commit, verify or add, so it must not
    import them (nor pydantic, which typer 0.29 brings to every option); on a
    clean KB it neither locks nor recovers (filelock, psutil, the journal
    parser), its config has no setting (YAML) and it draws no live view."""
    heavy = ("pypdf", "pypdfium2", "markdown_it", "pydantic", "openkb.commit.plan",
             "openkb.commit.transaction", "openkb.pages", "openkb.catalog", "openkb.verify",
             "openkb.ingest", "openkb.progress_summary", "openkb.treehash", "filelock",
             "psutil", "yaml", "openkb.recovery", "openkb.commit.journal", "rich.live")
    probe = ("import sys\nfrom openkb.cli.app import main\n"
             f"sys.argv = ['openkb', '--kb', {str(kb)!r}, 'search', 'anything']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             f"print('LOADED', ' '.join(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    loaded = result.stdout.rpartition("LOADED")[2].split()
    assert "LOADED" in result.stdout and loaded == [], result.stderr


def test_a_resync_of_unchanged_files_loads_no_converter_nor_executor(
        kb: Path, sample_docs: Path) -> None:
    """A re-sync that the stat cache answers whole starts no worker: it must
    not pay for importing the executors, the converters or the commit
    planner either (a third of its time on 10,000 unchanged notes)."""
    from openkb import api
    from openkb.progress import Progress

    api.sync(str(kb), [str(sample_docs)], Progress(), jobs=1)
    old = time.time_ns() - 3600 * 10**9  # not racily clean
    for path in sample_docs.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(old, old))
    api.sync(str(kb), [str(sample_docs)], Progress(), jobs=1, rehash=True)
    heavy = ("pypdf", "pypdfium2", "markdown_it", "openkb.executors", "openkb.prepare.stage",
             "openkb.prepare.pool", "openkb.commit.plan", "openkb.commit.transaction",
             "openkb.llm.stage", "openkb.pages")
    probe = ("import sys\nfrom openkb.cli.app import main\n"
             f"sys.argv = ['openkb', '--kb', {str(kb)!r}, 'sync', {str(sample_docs)!r}]\n"
             "code = 0\ntry:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print('EXIT', code)\n"
             f"print('LOADED', ' '.join(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    loaded = result.stdout.rpartition("LOADED")[2].split()
    assert "EXIT 0" in result.stdout and "LOADED" in result.stdout, result.stderr
    assert loaded == [], result.stderr


def test_the_api_offers_what_an_add_takes_and_returns() -> None:
    from openkb import api

    assert api.CancelToken().stop_requested is False
    assert "CancelToken" in api.__all__ and "AddReport" in api.__all__


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


def test_modules_and_functions_stay_small() -> None:
    """STYLE.md: no module over ~400 lines, no function over 80 (registry,
    verify, ingest were split by concept to get there)."""
    for path in _modules(PACKAGE):
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) < 400, _rel(path)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length < 80, f"{_rel(path)}:{node.lineno} {node.name}: {length} lines"
