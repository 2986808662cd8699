"""Opening ``kb.sqlite``: the connection settings the commit point relies on,
and the errors a user sees when the database cannot be opened."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openkb.errors import NotAKnowledgeBase, OpenKBError, WrittenByNewerOpenKB
from openkb.registry import migrations
from openkb.registry.migrations import SCHEMA_VERSION
from openkb.registry.schema import create_tables

# Below this, SQLite cannot create its WAL and shared-memory files (32 KiB
# and more) and writes fail: the open error is then the full disk's.
_NEARLY_FULL_BYTES = 1 << 20

_SCHEMA_VERSION_QUERY = "SELECT value FROM meta WHERE key = 'schema_version'"


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    # isolation_level=None: the registry issues BEGIN and COMMIT itself, so
    # the COMMIT that is the commit point happens exactly where it says.
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: the COMMIT that is our commit point must be on disk when it returns.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


def create_database(path: Path) -> sqlite3.Connection:
    """A new database at ``path`` holding every table."""
    conn = connect(path, readonly=False)
    with _immediate(conn):
        create_tables(conn)
    return conn


def finish_creation(conn: sqlite3.Connection) -> None:
    """Fold the WAL into the main file and leave WAL mode, so the new
    database is one self-contained file that can be renamed into place."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")


def open_database(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to an existing database of the schema version this
    openkb reads; an error that says what to do otherwise."""
    if not path.is_file():
        raise NotAKnowledgeBase(f"no registry at {path}")
    try:
        conn = connect(path, readonly=readonly)
        row = conn.execute(_SCHEMA_VERSION_QUERY).fetchone()
    except sqlite3.DatabaseError as exc:
        free = _free_bytes(path.parent)
        if free is not None and free < _NEARLY_FULL_BYTES:
            raise OpenKBError(
                f"cannot open the registry {path}: {exc}, because the disk is full "
                f"({free:,} bytes free where the KB lives)",
                hint="free some space on that disk, then run the command again "
                     "(reading commands still work)",
            ) from exc
        raise OpenKBError(
            f"cannot open the registry {path}: {exc}",
            hint="run `openkb verify` to see what is damaged",
        ) from exc
    version = _version(row)
    newer = migrations.unknown(conn, version) if version in (1, SCHEMA_VERSION) else []
    if version not in (1, SCHEMA_VERSION) or newer:
        what = f"migrations {', '.join(newer)}" if newer else f"schema version {version}"
        raise WrittenByNewerOpenKB(
            f"{path} was written by a newer openkb ({what}); this openkb reads schema "
            f"version {SCHEMA_VERSION} with the migrations it knows",
            hint="use the openkb version that last wrote this KB, or a newer one",
        )
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return _version(conn.execute(_SCHEMA_VERSION_QUERY).fetchone())


def _version(row: tuple | None) -> int:
    try:
        return int(row[0]) if row else 0
    except ValueError:
        return 0


def open_database_for_reading(path: Path) -> sqlite3.Connection:
    """A connection for a command that only reads.

    A normal connection first (it sees a live writer's commits through the
    WAL). If it cannot open, typically because a full disk leaves no room for
    the WAL's shared-memory file, and no WAL is left over to replay, the file
    is read as immutable: there is nothing newer than the main file to miss,
    and no writer can commit on a disk without room for its WAL either.
    """
    try:
        return open_database(path)
    except WrittenByNewerOpenKB:
        raise
    except OpenKBError:
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size:
            raise
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(_SCHEMA_VERSION_QUERY).fetchone()
        except sqlite3.DatabaseError:
            raise OpenKBError(f"cannot open the registry {path} to read it") from None
        return conn


def _free_bytes(directory: Path) -> int | None:
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
