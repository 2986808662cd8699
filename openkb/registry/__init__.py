"""The registry and the search index: one SQLite database, ``.openkb/kb.sqlite``.

Documents, their key terms, their chunks (FTS5, BM25) and the ids of committed
transactions live in one database, so a single SQLite COMMIT makes a
document's rows and its transaction id durable together: that COMMIT is the
commit point of :mod:`openkb.commit`. WAL mode lets readers (`list`,
`search`) run while a writer commits; ``synchronous=FULL`` makes the COMMIT
durable before it returns.

The package is the only place that speaks SQL: :mod:`.schema` (the tables),
:mod:`.open` (connections and their settings), :mod:`.reading`
(:class:`Registry`, every query), :mod:`.writing` (:class:`RegistryWriter`,
the statements of a write transaction), :mod:`.rows` (what they return).
"""

from openkb.registry.ledger import FailureRow
from openkb.registry.migrations import SCHEMA_VERSION, Migration
from openkb.registry.origins import FileStat, OriginRow
from openkb.registry.reading import Registry
from openkb.registry.rows import (
    HIT_END,
    HIT_START,
    DocumentRow,
    SearchHit,
    TransactionRow,
    info_from_json,
    info_to_json,
)
from openkb.registry.writing import RegistryWriter

__all__ = [
    "HIT_END", "HIT_START", "SCHEMA_VERSION", "DocumentRow", "FailureRow", "FileStat", "Migration",
    "OriginRow", "Registry", "RegistryWriter",
    "SearchHit", "TransactionRow", "info_from_json", "info_to_json",
]

