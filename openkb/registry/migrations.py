"""Upgrading a KB written by an earlier openkb: named, atomic migrations.

KBs outlive releases. Each change to what is on disk is a :class:`Migration`
with a unique name; ``migrations`` lists those a KB has had. Named rather
than numbered, so that changes made side by side do not fight over a number,
and a KB that has had a migration this openkb does not know (a newer
openkb wrote it) is recognised and refused rather than misread.

All pending migrations run in one SQLite transaction, under the KB's
exclusive lock, right after recovery (:meth:`openkb.kb.KB.exclusive`): SQLite
makes DDL transactional, so a crash leaves the KB wholly before or wholly
after the upgrade. A migration that changes what compiled pages look like
sets ``pending_recompile`` in ``meta`` in that same transaction; the KB then
runs a recompile, an ordinary journaled transaction that clears the flag in
its own COMMIT, so a crash between the two is finished by the next command.

Schema version 1 is openkb 0.1's, without this table; version 2 has it. A
0.1 openkb refuses a version 2 KB, which is the point: it would not keep
the new tables current.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

SCHEMA_VERSION = 2
PENDING_RECOMPILE_KEY = "pending_recompile"


@dataclass(frozen=True)
class Migration:
    name: str
    does: str  # one line for the log: what changes on disk
    apply: Callable[[sqlite3.Connection], None]  # inside the upgrade's transaction
    recompile: bool = False  # compiled pages change: a journaled recompile follows


def _create_file_stats(conn: sqlite3.Connection) -> None:
    # WITHOUT ROWID: looked up and range-scanned by origin only.
    conn.execute(
        "CREATE TABLE file_stats (origin TEXT PRIMARY KEY, dev INTEGER NOT NULL, "
        "ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
        "ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, recorded_ns INTEGER NOT NULL"
        ") WITHOUT ROWID")


def _create_failures(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE failures (origin TEXT PRIMARY KEY, dev INTEGER NOT NULL, "
        "ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
        "ctime_ns INTEGER NOT NULL, reason TEXT NOT NULL, permanent INTEGER NOT NULL, "
        "first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, tries INTEGER NOT NULL"
        ") WITHOUT ROWID")
# The JSON path of openkb.model.DocumentInfo.summary_pending in documents.info.
LLM_PENDING_EXPR = "json_extract(info, '$.summary_pending')"


def _llm_summaries(conn: sqlite3.Connection) -> None:
    # Documents' info may now hold an LLM summary and, while one is owed, the
    # reason it is pending; this index finds those (`status` counts them,
    # the next LLM run retries them) without reading every row. An openkb
    # that does not know this migration refuses the KB rather than failing
    # on the new keys.
    conn.execute(f"CREATE INDEX documents_llm_pending ON documents ({LLM_PENDING_EXPR}) "
                 f"WHERE {LLM_PENDING_EXPR} IS NOT NULL")


def _nothing_in_the_registry(conn: sqlite3.Connection) -> None:
    """For a change to compiled pages alone: the recompile does the work."""


# In the order they were written; each only adds what it names.
MIGRATIONS: tuple[Migration, ...] = (
    Migration("catalog-pages", "wiki/index.md lists catalog pages (wiki/catalog/), not every "
              "document", _nothing_in_the_registry, recompile=True),
    Migration("llm-summaries-pending-index",
              "documents may hold an LLM summary, or the reason one is pending",
              _llm_summaries),
    Migration("sync-stat-cache", "the registry keeps a stat cache (device, inode, size, "
              "mtime, ctime and hash per original), so unchanged files are not read again",
              _create_file_stats),
    Migration("sync-failure-ledger", "the registry remembers files that failed, so an "
              "unchanged file that cannot be read is not converted again on every run",
              _create_failures),
)


def applied(conn: sqlite3.Connection, version: int) -> set[str]:
    if version < 2:
        return set()
    return {name for (name,) in conn.execute("SELECT name FROM migrations")}


def pending(conn: sqlite3.Connection, version: int) -> list[Migration]:
    done = applied(conn, version)
    todo = [m for m in MIGRATIONS if m.name not in done]
    return todo if version == SCHEMA_VERSION else [_TRACKING, *todo]


def unknown(conn: sqlite3.Connection, version: int) -> list[str]:
    """Migrations the KB has had that this openkb does not know."""
    return sorted(applied(conn, version) - {m.name for m in MIGRATIONS})


def upgrade(conn: sqlite3.Connection, todo: list[Migration]) -> None:
    """Apply ``todo`` (from :func:`pending`) in the caller's write transaction."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for migration in todo:
        migration.apply(conn)
        if migration is _TRACKING:
            continue
        conn.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                     (migration.name, now))
        if migration.recompile:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, '1') "
                         "ON CONFLICT (key) DO UPDATE SET value = '1'", (PENDING_RECOMPILE_KEY,))


def _start_tracking(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                 (str(SCHEMA_VERSION),))


# Schema version 2 itself, for a KB of version 1 (openkb 0.1).
_TRACKING = Migration("schema-2", "the registry now records its migrations", _start_tracking)
