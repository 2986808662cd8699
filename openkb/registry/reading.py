"""Reading the registry: every query a command or a check runs.

Nothing outside :mod:`openkb.registry` runs SQL: a caller asks
:class:`Registry` a named question and gets rows back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from openkb.errors import IndexUnreadable
from openkb.registry import migrations
from openkb.registry.ledger import FailureQueries
from openkb.registry.migrations import Migration
from openkb.registry.open import (
    create_database,
    finish_creation,
    open_database,
    open_database_for_reading,
    schema_version,
)
from openkb.registry.origins import OriginQueries
from openkb.registry.rows import (
    DOC_COLUMNS,
    HIT_END,
    HIT_START,
    DocumentRow,
    SearchHit,
    TransactionRow,
    doc_row,
)
from openkb.registry.writing import RegistryWriter


class Registry(OriginQueries, FailureQueries):
    """A connection to a KB's database. Writers use :meth:`write_transaction`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def create(cls, path: Path) -> Registry:
        """A new, empty registry at ``path``."""
        return cls(create_database(path))

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Registry:
        return cls(open_database(path, readonly=readonly))

    @classmethod
    def open_for_reading(cls, path: Path) -> Registry:
        """The registry for a command that only reads (see
        :func:`openkb.registry.open.open_database_for_reading`)."""
        return cls(open_database_for_reading(path))

    def finish_creation(self) -> None:
        """Make a registry made by :meth:`create` one file, ready to be
        renamed into place; then it is closed."""
        finish_creation(self._conn)
        self.close()

    def close(self) -> None:
        self._conn.close()

    def shrink_wal(self) -> None:
        """Fold the WAL into the database and truncate it to nothing: the
        WAL only grows between checkpoints (a rolled-back transaction's
        frames included), which on a full disk is the room the next
        transaction needs. Best effort: a reader may keep it from finishing."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- upgrading -----------------------------------------------------------
    def pending_migrations(self) -> list[Migration]:
        return migrations.pending(self._conn, schema_version(self._conn))

    def upgrade(self) -> list[Migration]:
        """Apply every pending migration in one transaction; returns them.
        The caller holds the KB's exclusive lock."""
        with self.write_transaction() as writer:
            # Asked again under the write lock: another process may have done it.
            todo = migrations.pending(self._conn, schema_version(self._conn))
            if not todo:
                return []
            migrations.upgrade(self._conn, todo)
            writer.commit()
        return todo

    def needs_recompile(self) -> bool:
        """A migration changed how pages are compiled, and no recompile has
        committed since."""
        return self.meta(migrations.PENDING_RECOMPILE_KEY) == "1"

    # -- writing -----------------------------------------------------------
    @contextmanager
    def write_transaction(self) -> Iterator[RegistryWriter]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK if the body raises.

        The body decides when to commit by calling ``writer.commit()``; leaving
        the block without it rolls back.
        """
        self._conn.execute("BEGIN IMMEDIATE")
        writer = RegistryWriter(self._conn)
        try:
            yield writer
        finally:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    # -- reading -----------------------------------------------------------
    def document(self, name: str) -> DocumentRow | None:
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # bytes from argv that are not UTF-8: no stored name
                return None
        row = self._conn.execute(
            f"SELECT {DOC_COLUMNS} FROM documents WHERE name = ?", (name,)
        ).fetchone()
        return doc_row(row) if row else None

    def documents(self) -> list[DocumentRow]:
        rows = self._conn.execute(f"SELECT {DOC_COLUMNS} FROM documents ORDER BY name")
        return [doc_row(r) for r in rows]

    def catalog(self) -> list[tuple[str, str, str]]:
        """(name, title, kind) of every document, by name: what index.md lists."""
        return self._conn.execute(
            "SELECT name, title, kind FROM documents ORDER BY name"
        ).fetchall()

    def catalog_from(self, name: str, limit: int) -> list[tuple[str, str, str]]:
        """The catalog's first ``limit`` documents at or after ``name``."""
        return self._conn.execute(
            "SELECT name, title, kind FROM documents WHERE name >= ? ORDER BY name LIMIT ?",
            (name, limit)).fetchall()

    def concepts_from(self, term: str, limit: int) -> list[str]:
        """The first ``limit`` concepts (terms of two or more documents) at or after ``term``."""
        return [t for (t,) in self._conn.execute(
            "SELECT term FROM terms WHERE term >= ? AND doc_count >= 2 ORDER BY term LIMIT ?",
            (term, limit))]

    def count_documents(self) -> int:
        return self._conn.execute("SELECT count(*) FROM documents").fetchone()[0]

    def llm_pending(self) -> list[tuple[str, str]]:
        """(name, reason) of each document whose LLM summary is owed, by name."""
        return self._conn.execute(
            f"SELECT name, {migrations.LLM_PENDING_EXPR} FROM documents "
            f"WHERE {migrations.LLM_PENDING_EXPR} IS NOT NULL ORDER BY name").fetchall()

    def source_hashes(self) -> set[str]:
        """The source_sha256 of every document: what the LLM cache may hold."""
        return {sha for (sha,) in self._conn.execute("SELECT source_sha256 FROM documents")}

    def name_by_sha(self, sha256: str) -> str | None:
        row = self._conn.execute("SELECT name FROM documents WHERE sha256 = ?",
                                 (sha256,)).fetchone()
        return row[0] if row else None

    def names_by_origin(self, origin: str) -> list[str]:
        rows = self._conn.execute("SELECT name FROM documents WHERE origin = ? ORDER BY name",
                                 (origin,))
        return [r[0] for r in rows]

    def name_taken(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM documents WHERE name = ?", (name,)).fetchone() \
            is not None

    def term_docs(self, term: str) -> list[tuple[str, str]]:
        """(name, title) of the documents that have ``term`` among their key
        terms, oldest first (the order of a concept page)."""
        return self._conn.execute(
            "SELECT d.name, d.title FROM doc_terms t JOIN documents d ON d.name = t.doc "
            "WHERE t.term = ? ORDER BY d.rowid",
            (term,),
        ).fetchall()

    def term_count(self, term: str) -> int:
        row = self._conn.execute("SELECT doc_count FROM terms WHERE term = ?", (term,)).fetchone()
        return row[0] if row else 0

    def term_counts_of(self, terms: list[str]) -> dict[str, int]:
        """Documents per term, for these terms (0 for a term no document has)."""
        counts = dict.fromkeys(terms, 0)
        for at in range(0, len(terms), 500):  # under SQLite's limit on parameters
            part = terms[at:at + 500]
            counts.update(self._conn.execute(
                f"SELECT term, doc_count FROM terms WHERE term IN ({','.join('?' * len(part))})",
                part))
        return counts

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def doc_terms(self, name: str) -> list[str]:
        rows = self._conn.execute("SELECT term FROM doc_terms WHERE doc = ? ORDER BY term", (name,))
        return [r[0] for r in rows]

    def concepts(self) -> list[tuple[str, int]]:
        """(term, number of documents) for every term shared by two or more."""
        return self._conn.execute(
            "SELECT term, doc_count FROM terms WHERE doc_count >= 2 ORDER BY term"
        ).fetchall()

    def has_transaction(self, txid: str) -> bool:
        return self._conn.execute("SELECT 1 FROM transactions WHERE txid = ?", (txid,)).fetchone() \
            is not None

    def total_bytes(self) -> int:
        """The size of every original, summed."""
        return self._conn.execute("SELECT coalesce(sum(bytes), 0) FROM documents").fetchone()[0]

    def last_transaction(self) -> TransactionRow | None:
        """The transaction committed last, if any."""
        row = self._conn.execute(
            "SELECT txid, op, docs, committed_at FROM transactions "
            "ORDER BY committed_at DESC, rowid DESC LIMIT 1").fetchone()
        if row is None:
            return None
        txid, op, docs, committed_at = row
        return TransactionRow(txid, op, orjson.loads(docs), committed_at)

    def chunks_of(self, name: str) -> list[tuple[int, int, str, str]]:
        """(id, ord, heading, body) of a document's indexed chunks."""
        return self._conn.execute(
            "SELECT c.id, c.ord, c.heading, f.body FROM chunks c "
            "JOIN chunks_fts f ON f.rowid = c.id WHERE c.doc = ? ORDER BY c.ord",
            (name,),
        ).fetchall()

    def search(self, fts_query: str, limit: int) -> list[SearchHit]:
        """Best chunk per document, by BM25 (headings weigh twice the body).

        Ranks first and cuts snippets after: snippet() in the ranking query
        would be computed for every matching chunk before the sort (a word in
        every document meant thousands of snippets for ten hits)."""
        ranked = self._conn.execute(
            "SELECT chunks_fts.rowid, c.doc, bm25(chunks_fts, 2.0, 1.0) AS score "
            "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN documents d ON d.name = c.doc "
            "WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?",
            (fts_query, max(limit * 8, 50)),
        )
        best: dict[str, tuple[int, float]] = {}
        for rowid, doc, score in ranked:
            if doc not in best:
                best[doc] = (rowid, score)
                if len(best) == limit:
                    break
        hits = []
        for doc, (rowid, score) in best.items():
            row = self._conn.execute(
                "SELECT d.title, c.heading, "
                f"snippet(chunks_fts, 1, '{HIT_START}', '{HIT_END}', '…', 24) "
                "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                "JOIN documents d ON d.name = c.doc "
                "WHERE chunks_fts MATCH ? AND chunks_fts.rowid = ?",
                (fts_query, rowid),
            ).fetchone()
            if row is not None:
                hits.append(SearchHit(doc, row[0], row[1], row[2], -score))
        return hits

    # -- consistency checks (openkb verify, the tree hash) -------------------
    def integrity_problems(self) -> list[str]:
        problems = [r[0] for r in self._conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        try:
            self._conn.execute(
                "INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"FTS5 integrity check: {exc}")
        return problems

    def chunk_counts(self) -> dict[str, int]:
        """Indexed chunks per document name (names without a row included)."""
        return dict(self._conn.execute("SELECT doc, count(*) FROM chunks GROUP BY doc"))

    def fts_row_count(self) -> int:
        """Rows of the FTS5 table. Raises :class:`IndexUnreadable` if it is
        gone, or its shadow tables are too damaged for FTS5 to open it."""
        try:
            return self._conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise IndexUnreadable(f"the search index cannot be read: {exc}",
                                  hint="`openkb verify --repair` rebuilds it") from exc

    def term_counts(self) -> dict[str, int]:
        """Documents per key term, counted from ``doc_terms``."""
        return dict(self._conn.execute("SELECT term, count(*) FROM doc_terms GROUP BY term"))

    def stored_term_counts(self) -> dict[str, int]:
        """Documents per key term, as ``terms`` keeps them (concepts read these)."""
        return dict(self._conn.execute("SELECT term, doc_count FROM terms"))

    def logical_rows(self) -> Iterator[tuple]:
        """Every row that holds content, in a fixed order, without what
        differs between two builds of the same KB (times, transaction ids,
        SQLite's physical layout): what the tree hash covers."""
        for query in _LOGICAL_QUERIES:
            yield from self._conn.execute(query)


_LOGICAL_QUERIES = (
    "SELECT name, sha256, origin, ext, kind, title, bytes, info, source_sha256, summary_sha256 "
    "FROM documents ORDER BY name",
    "SELECT term, doc FROM doc_terms ORDER BY term, doc",
    "SELECT term, doc_count FROM terms ORDER BY term",
    "SELECT c.doc, c.ord, c.heading, f.body FROM chunks c JOIN chunks_fts f ON f.rowid = c.id "
    "ORDER BY c.doc, c.ord",
)
