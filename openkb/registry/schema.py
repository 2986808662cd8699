"""The tables of ``.openkb/kb.sqlite``.

``documents`` holds one row per committed document, ``doc_terms`` and
``terms`` its key terms (a term shared by two or more documents is a
concept), ``chunks`` and the FTS5 table ``chunks_fts`` the search index,
and ``transactions`` the id of every committed transaction: the row whose
presence recovery reads as "the commit point passed".

A new database gets openkb 0.1's tables, then every migration
(:mod:`.migrations`): one path to today's schema, whether a KB was created
today or upgraded from 0.1.
"""

from __future__ import annotations

import sqlite3

from openkb.registry import migrations

FTS_DDL = (
    "CREATE VIRTUAL TABLE chunks_fts USING fts5 ("
    "heading, body, tokenize = 'porter unicode61 remove_diacritics 2')"
)
# The tables FTS5 keeps chunks_fts in.
FTS_SHADOWS = tuple(f"chunks_fts_{part}" for part in
                    ("data", "idx", "content", "docsize", "config"))

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL,
    ext TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    info TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    summary_sha256 TEXT NOT NULL,
    added_at TEXT NOT NULL,
    txid TEXT NOT NULL
);
CREATE INDEX documents_origin ON documents (origin);
CREATE TABLE doc_terms (
    term TEXT NOT NULL,
    doc TEXT NOT NULL REFERENCES documents (name),
    PRIMARY KEY (term, doc)
) WITHOUT ROWID;
CREATE INDEX doc_terms_doc ON doc_terms (doc);
CREATE TABLE terms (term TEXT PRIMARY KEY, doc_count INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX terms_concepts ON terms (doc_count) WHERE doc_count >= 2;
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    doc TEXT NOT NULL REFERENCES documents (name),
    ord INTEGER NOT NULL,
    heading TEXT NOT NULL
);
CREATE INDEX chunks_doc ON chunks (doc);
{FTS_DDL};
CREATE TABLE transactions (
    txid TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    docs TEXT NOT NULL,
    committed_at TEXT NOT NULL
);
"""


def create_tables(conn: sqlite3.Connection) -> None:
    """Every table, and the schema version, on an empty database (the
    caller holds a write transaction)."""
    for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    migrations.upgrade(conn, migrations.pending(conn, 1))
    # A new KB has nothing to recompile.
    conn.execute("DELETE FROM meta WHERE key = ?", (migrations.PENDING_RECOMPILE_KEY,))
