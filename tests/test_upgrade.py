"""KBs outlive releases: what openkb 0.1 left half-done, this openkb finishes.

tests/fixtures/crashed-kbs-0.1.tar.gz holds KBs that openkb 0.1 (commit
8ce9c5c) was SIGKILLed in, mid-transaction, with its journals in 0.1's
format (built by tests/fixtures/build_crashed_kbs.py). Recovery must read
them, roll each the right way, and leave a KB that verifies and takes new
documents.
"""

from __future__ import annotations

import sqlite3
import tarfile
from pathlib import Path

import pytest
from conftest import markdown_doc, verify_ok, write_tree

from openkb import api
from openkb.errors import OpenKBError
from openkb.progress import Progress
from openkb.registry import migrations

FIXTURE = Path(__file__).parent / "fixtures" / "crashed-kbs-0.1.tar.gz"

# KB -> (documents after recovery, which way it went)
EXPECTED = {
    "update-compile.after": ({"alpha", "beta"}, "rolled_back"),
    "remove-keep-raw-publish.after": ({"alpha", "beta"}, "rolled_back"),
    "add-registry_write.after": ({"alpha", "beta", "gamma"}, "rolled_forward"),
    "add-mark_committed.status_written": ({"alpha", "beta", "gamma"}, "rolled_forward"),
}


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upgrade")
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(root, filter="data")
    return root / "crashed-kbs-0.1"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_transaction_0_1_left_unfinished_is_finished(crashed: Path, tmp_path: Path,
                                                       name: str) -> None:
    kb = crashed / name
    (journal,) = (kb / ".openkb" / "journal").glob("*.json")
    docs, way = EXPECTED[name]
    report = api.recover(str(kb), Progress())
    assert getattr(report, way) == [journal.stem]
    verify_ok(kb)
    assert {row.name for row in api.list_documents(str(kb), Progress())} == docs
    if name.startswith("update"):
        source = (kb / "wiki" / "sources" / "alpha.md").read_text()
        assert "shared topic" in source and "figs" not in source
    if name.startswith("remove"):
        assert (kb / "raw" / "alpha.md").is_file()
        assert not list((kb / "attic").glob("*")) if (kb / "attic").exists() else True
    extra = write_tree(tmp_path / "extra", {"delta.md": markdown_doc("Delta", "quinces")})
    assert not api.add(str(kb), [str(extra)], Progress(), jobs=1).failed
    verify_ok(kb)


# -- migrations -------------------------------------------------------------------


def _sql(kb: Path, query: str, *args: object) -> list[tuple]:
    with sqlite3.connect(kb / ".openkb" / "kb.sqlite") as conn:
        return conn.execute(query, args).fetchall()


def test_a_0_1_kb_is_upgraded_to_schema_2_by_its_first_command(crashed: Path) -> None:
    kb = crashed / "add-registry_write.after"
    api.list_documents(str(kb), Progress())
    assert _sql(kb, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
    assert {name for (name,) in _sql(kb, "SELECT name FROM migrations")} == {
        m.name for m in migrations.MIGRATIONS}
    verify_ok(kb)
    # catalog-pages: 0.1's index.md listed every document; now it lists pages.
    index = (kb / "wiki" / "index.md").read_text()
    assert "[[catalog/documents/_first|" in index and "[[summaries/" not in index
    assert "[[summaries/" in (kb / "wiki" / "catalog" / "documents" / "_first.md").read_text()


def test_a_kb_a_newer_openkb_migrated_is_refused(kb: Path) -> None:
    _sql(kb, "INSERT INTO migrations VALUES ('from-the-future', '2030-01-01T00:00:00Z')")
    for call in (lambda: api.list_documents(str(kb), Progress()),
                 lambda: api.recover(str(kb), Progress())):
        with pytest.raises(OpenKBError, match=r"newer openkb.*from-the-future"):
            call()


@pytest.fixture
def extra_migration(monkeypatch: pytest.MonkeyPatch) -> migrations.Migration:
    """A migration this openkb does not ship: a new table, and pages to recompile."""
    migration = migrations.Migration(
        "test-extra-table", "adds a table for the test",
        lambda conn: conn.execute("CREATE TABLE extra (x INTEGER)"), recompile=True)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, migration))
    return migration


def test_a_pending_migration_runs_once_then_the_pages_are_recompiled(
        kb: Path, tmp_path: Path, extra_migration: migrations.Migration) -> None:
    docs = write_tree(tmp_path / "docs", {"one.md": markdown_doc("One", "plums")})
    api.add(str(kb), [str(docs)], Progress(), jobs=1)  # the first command upgrades
    assert _sql(kb, "SELECT name FROM migrations WHERE name = ?", extra_migration.name)
    assert _sql(kb, "SELECT count(*) FROM extra") == [(0,)]
    assert not _sql(kb, "SELECT 1 FROM meta WHERE key = ?", migrations.PENDING_RECOMPILE_KEY)
    assert "recompile" in (kb / "wiki" / "log.md").read_text()
    verify_ok(kb)


def test_a_crash_between_the_upgrade_and_its_recompile_is_finished_by_any_command(
        kb: Path) -> None:
    """The upgrade's COMMIT set the flag; the recompile never committed."""
    _sql(kb, "INSERT INTO meta VALUES (?, '1')", migrations.PENDING_RECOMPILE_KEY)
    (kb / "wiki" / "index.md").write_text("# stale\n")  # pages still in the old format
    api.list_documents(str(kb), Progress())
    assert not _sql(kb, "SELECT 1 FROM meta WHERE key = ?", migrations.PENDING_RECOMPILE_KEY)
    verify_ok(kb)
