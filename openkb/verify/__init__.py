"""`openkb verify [--repair]`: check every invariant of a KB, and mend what its
own data allows.

Invariants:

- SQLite ``integrity_check`` and the FTS5 integrity check pass;
- no journal is pending, no staging, backup or temp file is left over;
- every registry row has its raw, source and summary files, with the hashes
  the registry recorded, and at least one chunk in the index;
- no file in ``raw/``, ``wiki/sources`` or ``wiki/summaries`` lacks a row,
  and no chunk lacks a document;
- concept pages, ``index.md`` and every summary are byte for byte what
  :mod:`openkb.pages` renders from the registry; term counts match.

A crash in the middle of a transaction breaks some of them on purpose: the
paths its journal holds mid-flight. Each problem such a pending journal
explains is attributed to it (:mod:`.attribution`), so a report can show one
line for the transaction instead of one per path.

Repair never deletes an original: orphaned files, stray pages among the
concepts included, move to ``.openkb/quarantine/<time>/``, a folder of their
own for each repair; what a crash left in ``.openkb`` is swept as recovery
sweeps it; pages are re-rendered by a journaled recompile; the index is
rebuilt from ``wiki/sources``; a document whose source is lost is
re-converted from its raw file.

Modules: :mod:`.report` (what a check finds, and its grouping), :mod:`.check`
(finding it), :mod:`.attribution` (which journal explains what),
:mod:`.repair` (mending it, and :func:`verify_kb`, which runs the lot).
"""

from openkb.verify.check import check
from openkb.verify.repair import verify_kb
from openkb.verify.report import JournalGroup, KindGroup, Problem, VerifyReport

__all__ = ["JournalGroup", "KindGroup", "Problem", "VerifyReport", "check", "verify_kb"]
