"""What the registry hands out: rows as frozen dataclasses, never cursors."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from openkb.model import DocumentInfo, OutlineEntry

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


@dataclass(frozen=True, slots=True)
class TransactionRow:
    """A committed transaction, as ``transactions`` records it."""

    txid: str
    op: str
    docs: list[str]
    committed_at: str


# Fields left out of the stored JSON while empty, so a document that never
# had an LLM summary is stored byte for byte as before they existed.
_OMITTED_WHEN_EMPTY = ("summary", "summary_pending")


def info_to_json(info: DocumentInfo) -> bytes:
    """The stored form. An empty ``summary_pending`` must be absent, not
    empty: the index of pending documents holds every non-null value."""
    data = orjson.loads(orjson.dumps(info))
    for name in _OMITTED_WHEN_EMPTY:
        if not data[name]:
            del data[name]
    return orjson.dumps(data)


def info_from_json(raw: str | bytes) -> DocumentInfo:
    data = orjson.loads(raw)
    data["outline"] = [OutlineEntry(**entry) for entry in data.get("outline", [])]
    return DocumentInfo(**data)


DOC_COLUMNS = ("name, sha256, origin, ext, kind, title, bytes, info, source_sha256, "
               "summary_sha256, added_at, txid")


def doc_row(row: tuple) -> DocumentRow:
    """A ``documents`` row, selected as :data:`DOC_COLUMNS`."""
    values = list(row)
    values[7] = info_from_json(values[7])
    return DocumentRow(*values)
