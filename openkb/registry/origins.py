"""Queries by origin, for `openkb sync`: which documents came from under a
path, so a sync can tell which of them vanished.

A mixin of :class:`~openkb.registry.reading.Registry`, kept apart so the
reading module stays one concept: the questions add and search ask.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OriginRow:
    """A document, as a sync sees it: where it came from, and its content."""

    name: str
    origin: str
    sha256: str


class OriginQueries:
    _conn: sqlite3.Connection

    def documents_under(self, roots: list[str]) -> list[OriginRow]:
        """Every document whose origin is one of ``roots`` or lies below one
        (absolute paths), each once, by origin."""
        found: dict[str, OriginRow] = {}
        for root in roots:
            below = root.rstrip(os.sep) + os.sep
            # A range on the origin index: every path that starts with
            # ``root/`` sorts between ``root/`` and ``root0`` ('0' follows '/').
            rows = self._conn.execute(
                "SELECT name, origin, sha256 FROM documents "
                "WHERE origin = ? OR (origin >= ? AND origin < ?)",
                (root, below, below[:-1] + chr(ord(os.sep) + 1)))
            for name, origin, sha in rows:
                found[name] = OriginRow(name, origin, sha)
        return sorted(found.values(), key=lambda r: r.origin)
