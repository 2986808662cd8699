"""Which pending journal explains which problem.

A transaction killed mid-flight leaves the paths it was moving out of place
until recovery finishes it: a `remove` of 300 documents, killed after
publishing, leaves 900 of them "missing" (they sit in its backup dir). Those
are one problem, the transaction, not 900. A problem is attributed to a
pending journal only if the journal can be trusted (recovery would run it)
and names the problem's path:

- a path one of its actions names: a target, a staged file, an attic
  path, or the journal file itself;
- a path in its backup dir ``.openkb/journal/<txid>/`` or one of its
  staging dirs;
- a temp file beside one of its targets (``.<target name>.openkb-tmp-...``,
  see :func:`openkb.fsio.tmp_path_for`): a write it had in flight;
- for a per-document problem (code ``index``, whose path is a document's
  name), a document the journal names.

Anything else, however many, is the KB's own problem and is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from openkb import fsio
from openkb.commit.journal import Journal, JournalUnreadable
from openkb.errors import JournalRefused
from openkb.layout import KBLayout
from openkb.pending import pending_journal_paths
from openkb.verify.report import Problem

# Codes whose path is a document's name, not a file.
DOCUMENT_CODES = ("index",)


@dataclass(frozen=True)
class InFlight:
    """What one pending, trusted journal holds mid-flight."""

    txid: str
    paths: frozenset[str]  # KB-relative, as its actions name them
    dirs: tuple[str, ...]  # KB-relative dirs and staged files that are wholly its own
    docs: frozenset[str]

    @classmethod
    def of(cls, layout: KBLayout, journal: Journal) -> InFlight:
        paths = {layout.rel(journal.path(layout))}
        for action in journal.actions:
            paths.update(action.paths())
        dirs = (layout.rel(journal.backup_dir(layout)), *journal.staging)
        return cls(journal.txid, frozenset(paths), dirs, frozenset(journal.docs))

    def explains(self, problem: Problem) -> bool:
        path = problem.path
        if problem.code in DOCUMENT_CODES:
            return path in self.docs
        if path in self.paths or any(path == d or path.startswith(f"{d}/") for d in self.dirs):
            return True
        parent, _, name = path.rpartition("/")
        target = _target_of_temp(name)
        return target is not None and f"{parent}/{target}".lstrip("/") in self.paths


def _target_of_temp(name: str) -> str | None:
    """The file a temp file was written for (``.<name>.openkb-tmp-<pid>-<n>``)."""
    if not fsio.is_tmp_name(name):
        return None
    return name[1:name.index(fsio.TMP_MARK)] or None


def pending_in_flight(layout: KBLayout) -> list[InFlight]:
    """Every pending journal that recovery would run, in creation order.
    One it would refuse, or that holds no journal, explains nothing."""
    found = []
    for path in pending_journal_paths(layout):
        try:
            journal = Journal.load(layout, path)
        except (JournalUnreadable, JournalRefused, OSError):
            continue
        found.append(InFlight.of(layout, journal))
    return found


def attribute(layout: KBLayout, problems: list[Problem]) -> None:
    """Set each problem's ``journal`` to the txid of the first pending
    journal that explains it."""
    in_flight = pending_in_flight(layout)
    if not in_flight:
        return
    for problem in problems:
        problem.journal = next((j.txid for j in in_flight if j.explains(problem)), None)
