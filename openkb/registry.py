"""The registry and the search index: one SQLite database, ``.openkb/kb.sqlite``.

Documents, their key terms, their chunks (FTS5, BM25) and the ids of committed
transactions live in one database, so a single SQLite COMMIT makes a
document's rows and its transaction id durable together: that COMMIT is the
commit point of :mod:`openkb.commit`. WAL mode lets readers (`list`,
`search`) run while a writer commits; ``synchronous=FULL`` makes the COMMIT
durable before it returns.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import orjson

from openkb.errors import NotAKnowledgeBase, OpenKBError
from openkb.model import Chunk, DocumentInfo, OutlineEntry

SCHEMA_VERSION = 1

_FTS_DDL = (
    "CREATE VIRTUAL TABLE chunks_fts USING fts5 ("
    "heading, body, tokenize = 'porter unicode61 remove_diacritics 2')"
)
# The tables FTS5 keeps chunks_fts in.
_FTS_SHADOWS = tuple(f"chunks_fts_{part}" for part in
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
{_FTS_DDL};
CREATE TABLE transactions (
    txid TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    docs TEXT NOT NULL,
    committed_at TEXT NOT NULL
);
"""

# Snippet markers: control characters no document text keeps (prepare strips
# them), turned into highlighting by whoever renders the result.
HIT_START = "\x02"
HIT_END = "\x03"


@dataclass(frozen=True, slots=True)
class DocumentRow:
    name: str
    sha256: str
    origin: str
    ext: str
    kind: str
    title: str
    bytes: int
    info: DocumentInfo
    source_sha256: str
    summary_sha256: str
    added_at: str
    txid: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    doc: str
    title: str
    heading: str
    snippet: str
    score: float


def info_to_json(info: DocumentInfo) -> bytes:
    return orjson.dumps(info)


def info_from_json(raw: str | bytes) -> DocumentInfo:
    data = orjson.loads(raw)
    data["outline"] = [OutlineEntry(**entry) for entry in data.get("outline", [])]
    return DocumentInfo(**data)


_DOC_COLUMNS = ("name, sha256, origin, ext, kind, title, bytes, info, source_sha256, "
                "summary_sha256, added_at, txid")


def _doc_row(row: tuple) -> DocumentRow:
    values = list(row)
    values[7] = info_from_json(values[7])
    return DocumentRow(*values)


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
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


# Below this, SQLite cannot create its WAL and shared-memory files (32 KiB
# and more) and writes fail: the open error is then the full disk's.
_NEARLY_FULL_BYTES = 1 << 20


def _free_bytes(directory: Path) -> int | None:
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def open_for_reading(path: Path) -> Registry:
    """The registry for a command that only reads.

    A normal connection first (it sees a live writer's commits through the
    WAL). If it cannot open, typically because a full disk leaves no room for
    the WAL's shared-memory file, and no WAL is left over to replay, the file
    is read as immutable: there is nothing newer than the main file to miss,
    and no writer can commit on a disk without room for its WAL either.
    """
    try:
        return Registry.open(path)
    except OpenKBError:
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size:
            raise
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError:
            raise OpenKBError(f"cannot open the registry {path} to read it") from None
        return Registry(conn)


class Registry:
    """A connection to a KB's database. Writers use :meth:`write_transaction`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def create(cls, path: Path) -> Registry:
        conn = _connect(path, readonly=False)
        with _immediate(conn):
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return cls(conn)

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Registry:
        if not path.is_file():
            raise NotAKnowledgeBase(f"no registry at {path}")
        try:
            conn = _connect(path, readonly=readonly)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
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
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise OpenKBError(
                f"{path} has schema version {row[0] if row else 'none'}; "
                f"this openkb reads version {SCHEMA_VERSION}",
                hint="use the openkb version that created this KB",
            )
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    # -- writing -----------------------------------------------------------
    @contextmanager
    def write_transaction(self) -> Iterator[RegistryWriter]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK if the body raises.

        The body decides when to commit by calling ``writer.commit()``; leaving
        the block without it rolls back.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        writer = RegistryWriter(self.conn)
        try:
            yield writer
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    # -- reading -----------------------------------------------------------
    def document(self, name: str) -> DocumentRow | None:
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # bytes from argv that are not UTF-8: no stored name
                return None
        row = self.conn.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE name = ?", (name,)
        ).fetchone()
        return _doc_row(row) if row else None

    def documents(self) -> list[DocumentRow]:
        rows = self.conn.execute(f"SELECT {_DOC_COLUMNS} FROM documents ORDER BY name")
        return [_doc_row(r) for r in rows]

    def catalog(self) -> list[tuple[str, str, str]]:
        """(name, title, kind) of every document, by name: what index.md lists."""
        return self.conn.execute(
            "SELECT name, title, kind FROM documents ORDER BY name"
        ).fetchall()

    def count_documents(self) -> int:
        return self.conn.execute("SELECT count(*) FROM documents").fetchone()[0]

    def name_by_sha(self, sha256: str) -> str | None:
        row = self.conn.execute("SELECT name FROM documents WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None

    def names_by_origin(self, origin: str) -> list[str]:
        rows = self.conn.execute("SELECT name FROM documents WHERE origin = ? ORDER BY name",
                                 (origin,))
        return [r[0] for r in rows]

    def name_taken(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM documents WHERE name = ?", (name,)).fetchone() \
            is not None

    def term_docs(self, term: str) -> list[tuple[str, str]]:
        """(name, title) of the documents that have ``term`` among their key
        terms, oldest first (the order of a concept page)."""
        return self.conn.execute(
            "SELECT d.name, d.title FROM doc_terms t JOIN documents d ON d.name = t.doc "
            "WHERE t.term = ? ORDER BY d.rowid",
            (term,),
        ).fetchall()

    def term_count(self, term: str) -> int:
        row = self.conn.execute("SELECT doc_count FROM terms WHERE term = ?", (term,)).fetchone()
        return row[0] if row else 0

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def doc_terms(self, name: str) -> list[str]:
        rows = self.conn.execute("SELECT term FROM doc_terms WHERE doc = ? ORDER BY term", (name,))
        return [r[0] for r in rows]

    def concepts(self) -> list[tuple[str, int]]:
        """(term, number of documents) for every term shared by two or more."""
        return self.conn.execute(
            "SELECT term, doc_count FROM terms WHERE doc_count >= 2 ORDER BY term"
        ).fetchall()

    def has_transaction(self, txid: str) -> bool:
        return self.conn.execute("SELECT 1 FROM transactions WHERE txid = ?", (txid,)).fetchone() \
            is not None

    def chunks_of(self, name: str) -> list[tuple[int, int, str, str]]:
        """(id, ord, heading, body) of a document's indexed chunks."""
        return self.conn.execute(
            "SELECT c.id, c.ord, c.heading, f.body FROM chunks c "
            "JOIN chunks_fts f ON f.rowid = c.id WHERE c.doc = ? ORDER BY c.ord",
            (name,),
        ).fetchall()

    def search(self, fts_query: str, limit: int) -> list[SearchHit]:
        """Best chunk per document, by BM25 (headings weigh twice the body)."""
        rows = self.conn.execute(
            "SELECT c.doc, d.title, c.heading, "
            f"snippet(chunks_fts, 1, '{HIT_START}', '{HIT_END}', '…', 24), "
            "bm25(chunks_fts, 2.0, 1.0) AS score "
            "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN documents d ON d.name = c.doc "
            "WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?",
            (fts_query, max(limit * 8, 50)),
        )
        best: dict[str, SearchHit] = {}
        for doc, title, heading, snippet, score in rows:
            if doc not in best:
                best[doc] = SearchHit(doc, title, heading, snippet, -score)
                if len(best) == limit:
                    break
        return list(best.values())

    def integrity_problems(self) -> list[str]:
        problems = [r[0] for r in self.conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        try:
            self.conn.execute(
                "INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"FTS5 integrity check: {exc}")
        return problems


class RegistryWriter:
    """The statements a transaction runs between BEGIN IMMEDIATE and COMMIT."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def insert_chunks(self, name: str, chunks: Iterable[Chunk]) -> None:
        for chunk in chunks:
            cur = self.conn.execute(
                "INSERT INTO chunks (doc, ord, heading) VALUES (?, ?, ?)",
                (name, chunk.ord, chunk.heading),
            )
            self.conn.execute(
                "INSERT INTO chunks_fts (rowid, heading, body) VALUES (?, ?, ?)",
                (cur.lastrowid, chunk.heading, chunk.text),
            )

    def delete_chunks(self, name: str) -> None:
        self.conn.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc = ?)", (name,)
        )
        self.conn.execute("DELETE FROM chunks WHERE doc = ?", (name,))

    def insert_document(self, row: DocumentRow) -> None:
        values = [getattr(row, f.name) for f in fields(DocumentRow)]
        values[7] = info_to_json(row.info)
        self.conn.execute(
            f"INSERT INTO documents ({_DOC_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
            values,
        )
        for term in row.info.terms:
            self.conn.execute("INSERT OR IGNORE INTO doc_terms (term, doc) VALUES (?, ?)",
                              (term, row.name))
            self.conn.execute(
                "INSERT INTO terms (term, doc_count) VALUES (?, 1) "
                "ON CONFLICT (term) DO UPDATE SET doc_count = doc_count + 1",
                (term,),
            )

    def delete_document(self, name: str) -> None:
        terms = [r[0] for r in self.conn.execute("SELECT term FROM doc_terms WHERE doc = ?",
                                                 (name,))]
        for term in terms:
            self.conn.execute("UPDATE terms SET doc_count = doc_count - 1 WHERE term = ?", (term,))
        self.conn.execute("DELETE FROM terms WHERE doc_count <= 0")
        self.conn.execute("DELETE FROM doc_terms WHERE doc = ?", (name,))
        self.conn.execute("DELETE FROM documents WHERE name = ?", (name,))

    def recount_terms(self) -> None:
        self.conn.execute("DELETE FROM terms")
        self.conn.execute("INSERT INTO terms (term, doc_count) "
                          "SELECT term, count(*) FROM doc_terms GROUP BY term")

    def reset_index(self) -> None:
        """Empty the search index, recreating the FTS5 table (it may be the
        damaged part)."""
        try:
            self.conn.execute("DROP TABLE IF EXISTS chunks_fts")
        except sqlite3.DatabaseError:
            self._drop_unopenable_fts()
        self.conn.execute(_FTS_DDL)
        self.conn.execute("DELETE FROM chunks")

    def _drop_unopenable_fts(self) -> None:
        """Drop an FTS5 table whose shadow tables are too damaged to open.

        DROP TABLE on it fails: it must construct the table to destroy it.
        The shadow tables are plain tables to SQLite and drop normally; the
        virtual table owns no pages (rootpage 0), so deleting its schema row
        frees nothing, and ``writable_schema = RESET`` reloads the schema
        without it. All inside the caller's transaction, so a failure rolls
        the whole rebuild back.
        """
        shadows = [name for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
            f"({', '.join('?' * len(_FTS_SHADOWS))})", _FTS_SHADOWS)]
        for name in shadows:
            self.conn.execute(f'DROP TABLE "{name}"')
        self.conn.execute("PRAGMA writable_schema = ON")
        try:
            self.conn.execute("DELETE FROM sqlite_master WHERE type = 'table' "
                              "AND name = 'chunks_fts' AND rootpage = 0")
        finally:
            self.conn.execute("PRAGMA writable_schema = RESET")

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def update_summary_sha(self, name: str, sha256: str) -> None:
        self.conn.execute("UPDATE documents SET summary_sha256 = ? WHERE name = ?", (sha256, name))

    def record_transaction(self, txid: str, op: str, docs: list[str], committed_at: str) -> None:
        self.conn.execute(
            "INSERT INTO transactions (txid, op, docs, committed_at) VALUES (?, ?, ?, ?)",
            (txid, op, orjson.dumps(docs).decode(), committed_at),
        )

    def commit(self) -> None:
        """The commit point: after this returns, the transaction has happened."""
        self.conn.execute("COMMIT")


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
