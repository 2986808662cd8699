"""Queries by origin, for `openkb sync`: which documents came from under a
path, so a sync can tell which of them vanished; and the stat cache
(``file_stats``): per origin, the stat fingerprint and content hash seen
last, so a file whose stat has not changed is not read again.

The stat cache is a cache: no transaction writes it and recovery never
reads it, so losing a write (a crash before its COMMIT) only means a file
is hashed once more. A stale entry cannot do harm either: an entry is
trusted only while the file's (device, inode, size, mtime, ctime) all
match, and its hash is only ever used to find the document holding it.

A mixin of :class:`~openkb.registry.reading.Registry`, kept apart so the
reading module stays one concept: the questions add and search ask.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import NamedTuple


# Named tuples, not dataclasses: a re-sync reads one of each per file
# (60,000 of them), and a tuple is made several times faster.
class OriginRow(NamedTuple):
    """A document, as a sync sees it: where it came from, and its content."""

    name: str
    origin: str
    sha256: str


class FileStat(NamedTuple):
    """What the stat cache knows of one origin."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str
    recorded_ns: int  # wall clock (ns) no later than when the stat was taken


def _range(root: str) -> tuple[str, str, str]:
    """(root, lower, upper): every path that is ``root`` or starts with
    ``root/`` (a range on an index: '0' sorts right after '/')."""
    below = root.rstrip(os.sep) + os.sep
    return root, below, below[:-1] + chr(ord(os.sep) + 1)


class OriginQueries:
    _conn: sqlite3.Connection

    def documents_under(self, roots: list[str]) -> list[OriginRow]:
        """Every document whose origin is one of ``roots`` or lies below one
        (absolute paths), each once, by origin."""
        found: dict[str, OriginRow] = {}
        for root in roots:
            rows = self._conn.execute(
                "SELECT name, origin, sha256 FROM documents "
                "WHERE origin = ? OR (origin >= ? AND origin < ?)", _range(root))
            found.update((row[0], OriginRow._make(row)) for row in rows)
        return sorted(found.values(), key=lambda r: r.origin)

    def file_stats_under(self, roots: list[str]) -> dict[str, FileStat]:
        """The stat cache's entries for origins at or below ``roots``."""
        found: dict[str, FileStat] = {}
        for root in roots:
            rows = self._conn.execute(
                "SELECT origin, dev, ino, size, mtime_ns, ctime_ns, sha256, recorded_ns "
                "FROM file_stats WHERE origin = ? OR (origin >= ? AND origin < ?)",
                _range(root))
            found.update((row[0], FileStat._make(row[1:])) for row in rows)
        return found

    def record_file_stats(self, entries: Sequence[tuple[str, FileStat]],
                          forget: Sequence[str] = ()) -> None:
        """Store (or replace) stat cache entries, and drop those of
        ``forget``, in one small transaction of their own."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "INSERT OR REPLACE INTO file_stats (origin, dev, ino, size, mtime_ns, ctime_ns, "
                "sha256, recorded_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(origin, s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns, s.sha256, s.recorded_ns)
                 for origin, s in entries])
            self._conn.executemany("DELETE FROM file_stats WHERE origin = ?",
                                   [(origin,) for origin in forget])
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def holders_of(self, shas: Sequence[str]) -> dict[str, str]:
        """sha256 -> name of the document holding it, for those held."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(shas))
        (rows,) = self._conn.execute("SELECT coalesce(max(rowid), 0) FROM documents").fetchone()
        if len(unique) * 4 >= rows:
            # Most of the KB (a re-sync of whole folders): one pass over the
            # table is twice as fast as that many index lookups.
            wanted = set(unique)
            return {sha: name for sha, name in self._conn.execute(
                "SELECT sha256, name FROM documents") if sha in wanted}
        for start in range(0, len(unique), 500):  # under SQLite's bound-variable limit
            part = unique[start:start + 500]
            marks = ", ".join("?" * len(part))
            found.update(self._conn.execute(
                f"SELECT sha256, name FROM documents WHERE sha256 IN ({marks})", part).fetchall())
        return found
