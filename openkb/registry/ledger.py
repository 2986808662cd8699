"""The failure ledger (``failures``): files that could not be ingested,
remembered with their stat fingerprint, so an unchanged file that failed
for good is not converted again on every run.

Like the stat cache, the ledger is outside the commit protocol: no
transaction writes it, recovery never reads it, and losing a write costs
one more try of a file that fails anyway.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FailureRow:
    origin: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    reason: str
    permanent: bool  # malformed, encrypted, unsupported, no text: not retried unchanged
    first_seen: str
    last_seen: str
    tries: int

    @property
    def fingerprint(self) -> tuple[int, int, int, int, int]:
        return (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns)


_COLUMNS = ("origin, dev, ino, size, mtime_ns, ctime_ns, reason, permanent, first_seen, "
            "last_seen, tries")


def _row(values: tuple) -> FailureRow:
    values = list(values)
    values[7] = bool(values[7])
    return FailureRow(*values)


class FailureQueries:
    _conn: sqlite3.Connection

    def failures(self) -> list[FailureRow]:
        return [_row(r) for r in self._conn.execute(
            f"SELECT {_COLUMNS} FROM failures ORDER BY origin")]

    def count_failures(self) -> int:
        return self._conn.execute("SELECT count(*) FROM failures").fetchone()[0]

    def failures_under(self, roots: list[str]) -> dict[str, FailureRow]:
        found: dict[str, FailureRow] = {}
        for root in roots:
            below = root.rstrip(os.sep) + os.sep
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM failures WHERE origin = ? OR "
                "(origin >= ? AND origin < ?)", (root, below, below[:-1] + chr(ord(os.sep) + 1)))
            for values in rows:
                found[values[0]] = _row(values)
        return found

    def record_failures(self, rows: Sequence[FailureRow], forget: Sequence[str] = ()) -> None:
        """Store (or replace) ledger entries and drop those of ``forget``, in
        one small transaction of their own."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                f"INSERT OR REPLACE INTO failures ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.origin, r.dev, r.ino, r.size, r.mtime_ns, r.ctime_ns, r.reason,
                  int(r.permanent), r.first_seen, r.last_seen, r.tries) for r in rows])
            self._conn.executemany("DELETE FROM failures WHERE origin = ?",
                                   [(origin,) for origin in forget])
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
