"""The registry's questions about key terms, concepts and near-copies.

A mixin of :class:`openkb.registry.Registry`, kept apart so each file reads
as one subject. Every query a commit asks here is bounded by the change
(an indexed lookup per key term or MinHash band), never by the KB's size.
"""

from __future__ import annotations

import sqlite3

import orjson

from openkb.registry.rows import TermState, TermUse


class ConceptQueries:
    _conn: sqlite3.Connection

    def candidate_df(self, key: str) -> int:
        """Documents that had ``key`` among their candidate terms."""
        row = self._conn.execute("SELECT df FROM term_df WHERE term = ?", (key,)).fetchone()
        return row[0] if row else 0

    def term_state(self, key: str) -> TermState | None:
        row = self._conn.execute("SELECT doc_count, concept, defined, display FROM terms "
                                 "WHERE term = ?", (key,)).fetchone()
        return TermState(row[0], bool(row[1]), bool(row[2]), row[3]) if row else None

    def term_uses(self, key: str, limit: int = -1) -> list[TermUse]:
        """The documents filed under ``key``, oldest first (the order of its page)."""
        rows = self._conn.execute(
            "SELECT d.name, d.title, t.surface, t.context, t.defines FROM doc_terms t "
            "JOIN documents d ON d.name = t.doc WHERE t.term = ? ORDER BY d.rowid LIMIT ?",
            (key, limit))
        return [TermUse(n, title, s, c, bool(df)) for n, title, s, c, df in rows]

    def term_doc_names(self, key: str, limit: int) -> list[str]:
        """Up to ``limit`` documents filed under ``key``, by name."""
        rows = self._conn.execute("SELECT doc FROM doc_terms WHERE term = ? ORDER BY doc "
                                  "LIMIT ?", (key, limit))
        return [r[0] for r in rows]

    def doc_term_surfaces(self, name: str) -> dict[str, str]:
        """key -> surface of a document's key terms."""
        return dict(self._conn.execute("SELECT term, surface FROM doc_terms WHERE doc = ?",
                                       (name,)))

    def concept_entries(self) -> list[tuple[str, str, int]]:
        """(key, display, documents) of every concept, by key."""
        return self._conn.execute("SELECT term, display, doc_count FROM terms WHERE concept = 1 "
                                  "ORDER BY term").fetchall()

    def docs_in_bands(self, bands: list[int]) -> set[str]:
        found: set[str] = set()
        for band in bands:
            found.update(r[0] for r in self._conn.execute(
                "SELECT doc FROM doc_bands WHERE band = ?", (band,)))
        return found

    def signature(self, name: str) -> list[int]:
        row = self._conn.execute("SELECT json_extract(info, '$.minhash') FROM documents "
                                 "WHERE name = ?", (name,)).fetchone()
        return orjson.loads(row[0]) if row and row[0] else []

    def near_copies(self, name: str) -> list[tuple[str, str]]:
        """(name, title) of the documents that are near-copies of ``name``, by name."""
        return self._conn.execute(
            "SELECT d.name, d.title FROM near_copies n JOIN documents d ON d.name = n.other "
            "WHERE n.doc = ? ORDER BY d.name", (name,)).fetchall()

    def has_related(self, name: str) -> bool:
        """The document's summary lists related documents (false if unknown)."""
        row = self._conn.execute("SELECT json_array_length(info, '$.related') FROM documents "
                                 "WHERE name = ?", (name,)).fetchone()
        return bool(row and row[0])

    def title_of(self, name: str) -> str | None:
        row = self._conn.execute("SELECT title FROM documents WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def compiled_rows(self) -> dict[str, list[tuple]]:
        """Every row of the compiled tables, in a fixed order: what `verify`
        compares with a replay from the documents alone."""
        queries = {
            "doc_terms": "SELECT term, doc, surface, context, defines FROM doc_terms "
                         "ORDER BY term, doc",
            "terms": "SELECT term, doc_count, concept, defined, display FROM terms ORDER BY term",
            "term_df": "SELECT term, df FROM term_df ORDER BY term",
            "doc_bands": "SELECT band, doc FROM doc_bands ORDER BY band, doc",
            "near_copies": "SELECT doc, other FROM near_copies ORDER BY doc, other",
        }
        return {table: self._conn.execute(q).fetchall() for table, q in queries.items()}
