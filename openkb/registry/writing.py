"""The statements of a write transaction, between BEGIN IMMEDIATE and the
COMMIT that is the commit point of :mod:`openkb.commit`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import fields

import orjson

from openkb.model import Chunk, DocumentInfo
from openkb.registry.migrations import DOCUMENT_COUNT_KEY, PENDING_RECOMPILE_KEY
from openkb.registry.rows import DOC_COLUMNS, DocumentRow, TermState, TermUse, info_to_json
from openkb.registry.schema import FTS_DDL, FTS_SHADOWS

# The registry's document count, kept beside the rows it counts: the
# commit weighs key terms by it, and count(*) reads every row (0.5 s on a
# KB of a million documents, on every commit).
COUNT_CHANGE = (f"UPDATE meta SET value = CAST(value AS INTEGER) + ? "
                f"WHERE key = '{DOCUMENT_COUNT_KEY}'")

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
        """The document's row; its key terms are filed by :meth:`file_terms`."""
        values = [getattr(row, f.name) for f in fields(DocumentRow)]
        values[7] = info_to_json(row.info)
        self._conn.execute(
            f"INSERT INTO documents ({DOC_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
            values,
        )
        self._conn.execute(COUNT_CHANGE, (1,))

    def delete_document(self, name: str) -> None:
        """The row and everything filed under its name; the counts of its
        terms are set by :meth:`set_term`."""
        for table, column in (("doc_terms", "doc"), ("doc_bands", "doc"), ("near_copies", "doc"),
                              ("near_copies", "other")):
            self._conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))
        if self._conn.execute("DELETE FROM documents WHERE name = ?", (name,)).rowcount:
            self._conn.execute(COUNT_CHANGE, (-1,))

    def file_terms(self, name: str, uses: Iterable[tuple[str, TermUse]]) -> None:
        """(key, use) rows of one document."""
        self._conn.executemany(
            "INSERT INTO doc_terms (term, doc, surface, context, defines) VALUES (?, ?, ?, ?, ?)",
            [(key, name, u.surface, u.context, int(u.defines)) for key, u in uses])

    def set_term(self, key: str, state: TermState | None) -> None:
        if state is None or state.count <= 0:
            self._conn.execute("DELETE FROM terms WHERE term = ?", (key,))
            return
        self._conn.execute(
            "INSERT INTO terms (term, doc_count, concept, defined, display) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (term) DO UPDATE SET doc_count = excluded.doc_count, "
            "concept = excluded.concept, defined = excluded.defined, display = excluded.display",
            (key, state.count, int(state.concept), int(state.defined), state.display))

    def set_candidate_df(self, key: str, df: int) -> None:
        if df <= 0:
            self._conn.execute("DELETE FROM term_df WHERE term = ?", (key,))
        else:
            self._conn.execute("INSERT INTO term_df (term, df) VALUES (?, ?) ON CONFLICT (term) "
                               "DO UPDATE SET df = excluded.df", (key, df))

    def add_bands(self, name: str, bands: Iterable[int]) -> None:
        self._conn.executemany("INSERT OR IGNORE INTO doc_bands (band, doc) VALUES (?, ?)",
                               [(band, name) for band in bands])

    def add_near_copy(self, one: str, other: str) -> None:
        self._conn.executemany("INSERT OR IGNORE INTO near_copies (doc, other) VALUES (?, ?)",
                               [(one, other), (other, one)])

    def reset_compiled(self) -> None:
        """Empty what a recompile fills again from the documents alone."""
        for table in ("doc_terms", "terms", "term_df", "doc_bands", "near_copies"):
            self._conn.execute(f"DELETE FROM {table}")
        # The kept document count too, which verify checks and repair's
        # recompile mends.
        self._conn.execute("INSERT INTO meta (key, value) SELECT ?, count(*) FROM documents "
                           "WHERE true ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           (DOCUMENT_COUNT_KEY,))

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
        """A new info for a committed document (an LLM summary or pending
        mark; related documents; a recompile's re-filed key terms, whose
        rows the same transaction writes)."""
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
