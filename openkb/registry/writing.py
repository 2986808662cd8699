"""The statements of a write transaction, between BEGIN IMMEDIATE and the
COMMIT that is the commit point of :mod:`openkb.commit`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import fields

import orjson

from openkb.model import Chunk, DocumentInfo
from openkb.registry.migrations import PENDING_RECOMPILE_KEY
from openkb.registry.rows import DOC_COLUMNS, DocumentRow, info_to_json
from openkb.registry.schema import FTS_DDL, FTS_SHADOWS


class RegistryWriter:
    """The statements a transaction runs between BEGIN IMMEDIATE and COMMIT."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def insert_chunks(self, name: str, chunks: Iterable[Chunk]) -> None:
        for chunk in chunks:
            cur = self._conn.execute(
                "INSERT INTO chunks (doc, ord, heading) VALUES (?, ?, ?)",
                (name, chunk.ord, chunk.heading),
            )
            self._conn.execute(
                "INSERT INTO chunks_fts (rowid, heading, body) VALUES (?, ?, ?)",
                (cur.lastrowid, chunk.heading, chunk.text),
            )

    def delete_chunks(self, name: str) -> None:
        self._conn.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc = ?)", (name,)
        )
        self._conn.execute("DELETE FROM chunks WHERE doc = ?", (name,))

    def insert_document(self, row: DocumentRow) -> None:
        values = [getattr(row, f.name) for f in fields(DocumentRow)]
        values[7] = info_to_json(row.info)
        self._conn.execute(
            f"INSERT INTO documents ({DOC_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
            values,
        )
        for term in row.info.terms:
            self._conn.execute("INSERT OR IGNORE INTO doc_terms (term, doc) VALUES (?, ?)",
                              (term, row.name))
            self._conn.execute(
                "INSERT INTO terms (term, doc_count) VALUES (?, 1) "
                "ON CONFLICT (term) DO UPDATE SET doc_count = doc_count + 1",
                (term,),
            )

    def delete_document(self, name: str) -> None:
        terms = [r[0] for r in self._conn.execute("SELECT term FROM doc_terms WHERE doc = ?",
                                                 (name,))]
        for term in terms:
            self._conn.execute("UPDATE terms SET doc_count = doc_count - 1 WHERE term = ?", (term,))
        self._conn.execute("DELETE FROM terms WHERE doc_count <= 0")
        self._conn.execute("DELETE FROM doc_terms WHERE doc = ?", (name,))
        self._conn.execute("DELETE FROM documents WHERE name = ?", (name,))

    def recount_terms(self) -> None:
        self._conn.execute("DELETE FROM terms")
        self._conn.execute("INSERT INTO terms (term, doc_count) "
                          "SELECT term, count(*) FROM doc_terms GROUP BY term")

    def reset_index(self) -> None:
        """Empty the search index, recreating the FTS5 table (it may be the
        damaged part)."""
        try:
            self._conn.execute("DROP TABLE IF EXISTS chunks_fts")
        except sqlite3.DatabaseError:
            self._drop_unopenable_fts()
        self._conn.execute(FTS_DDL)
        self._conn.execute("DELETE FROM chunks")

    def _drop_unopenable_fts(self) -> None:
        """Drop an FTS5 table whose shadow tables are too damaged to open.

        DROP TABLE on it fails: it must construct the table to destroy it.
        The shadow tables are plain tables to SQLite and drop normally; the
        virtual table owns no pages (rootpage 0), so deleting its schema row
        frees nothing, and ``writable_schema = RESET`` reloads the schema
        without it. All inside the caller's transaction, so a failure rolls
        the whole rebuild back.
        """
        shadows = [name for (name,) in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
            f"({', '.join('?' * len(FTS_SHADOWS))})", FTS_SHADOWS)]
        for name in shadows:
            self._conn.execute(f'DROP TABLE "{name}"')
        self._conn.execute("PRAGMA writable_schema = ON")
        try:
            self._conn.execute("DELETE FROM sqlite_master WHERE type = 'table' "
                              "AND name = 'chunks_fts' AND rootpage = 0")
        finally:
            self._conn.execute("PRAGMA writable_schema = RESET")

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def clear_pending_recompile(self) -> None:
        """A recompile commits: the pages are in today's format."""
        self._conn.execute("DELETE FROM meta WHERE key = ?", (PENDING_RECOMPILE_KEY,))

    def update_origin(self, name: str, origin: str) -> None:
        """A move (`openkb sync`): the document's original is now at ``origin``."""
        self._conn.execute("UPDATE documents SET origin = ? WHERE name = ?", (origin, name))

    def update_summary_sha(self, name: str, sha256: str) -> None:
        self._conn.execute("UPDATE documents SET summary_sha256 = ? WHERE name = ?", (sha256, name))

    def update_info(self, name: str, info: DocumentInfo) -> None:
        """A new summary (or pending mark) for a committed document; its
        title and terms, which other tables repeat, are unchanged."""
        self._conn.execute("UPDATE documents SET info = ? WHERE name = ?",
                           (info_to_json(info), name))

    def record_transaction(self, txid: str, op: str, docs: list[str], committed_at: str) -> None:
        self._conn.execute(
            "INSERT INTO transactions (txid, op, docs, committed_at) VALUES (?, ?, ?, ?)",
            (txid, op, orjson.dumps(docs).decode(), committed_at),
        )

    def commit(self) -> None:
        """The commit point: after this returns, the transaction has happened."""
        self._conn.execute("COMMIT")
