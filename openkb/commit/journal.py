"""The journal of one transaction: ``.openkb/journal/<txid>.json``.

It is written, fsynced, before the transaction touches anything, and names
every path the transaction may change, relative to the KB root, with the
action that changes it (:mod:`openkb.commit.actions`). That is all recovery
needs to undo the transaction, or to finish its cleanup, whichever side of
the commit point it died on. Backups (before-images) live in
``.openkb/journal/<txid>/``.

A journal is trusted only if it passes :func:`_trusted_actions`: a known
version, a well-formed txid, and paths that stay inside the areas openkb
writes. A journal that fails is refused and left in place, never executed:
a tampered journal must not make recovery delete or restore files elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from openkb import fsio
from openkb.commit import actions
from openkb.commit.actions import Action, Where
from openkb.errors import JournalRefused, UnsafePath
from openkb.layout import KBLayout
from openkb.pending import TXID

JOURNAL_VERSION = 1

ACTIVE = "active"
# Written by releases before 0.2, which marked a journal committed by
# rewriting it; still accepted, never written.
COMMITTED = "committed"



@dataclass
class Journal:
    txid: str
    op: str
    docs: list[str]
    actions: list[Action]  # in the order they are applied; undone in reverse
    staging: list[str] = field(default_factory=list)  # staging dirs to sweep afterwards
    status: str = ACTIVE
    created: str = ""
    pid: int = 0
    version: int = JOURNAL_VERSION

    # -- locations ---------------------------------------------------------
    @staticmethod
    def path_for(layout: KBLayout, txid: str) -> Path:
        return layout.journal_dir / f"{txid}.json"

    def path(self, layout: KBLayout) -> Path:
        return self.path_for(layout, self.txid)

    @staticmethod
    def backup_dir_for(layout: KBLayout, txid: str) -> Path:
        return layout.journal_dir / txid

    def backup_dir(self, layout: KBLayout) -> Path:
        return self.backup_dir_for(layout, self.txid)

    def where(self, layout: KBLayout) -> Where:
        """Where this transaction's actions find their paths."""
        return Where(layout, self.backup_dir(layout))

    # -- persistence -------------------------------------------------------
    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": self.version,
                "txid": self.txid,
                "status": self.status,
                "op": self.op,
                "docs": self.docs,
                "created": self.created,
                "pid": self.pid,
                "staging": self.staging,
                "actions": [action.to_json() for action in self.actions],
            },
            option=orjson.OPT_INDENT_2,
        )

    def write(self, layout: KBLayout) -> None:
        """Durably write the journal file. It is written once and never
        rewritten: recovery reads it, so it must never be replaced by bytes
        that were not fsynced."""
        fsio.write_atomic(self.path(layout), self.to_bytes())

    @classmethod
    def load(cls, layout: KBLayout, path: Path) -> Journal:
        """Read and validate a journal.

        Raises :class:`JournalUnreadable` if it does not parse into a
        journal at all (empty, torn, not JSON): what a power cut leaves of a
        file whose data never reached the disk, so recovery decides by the
        txid in its name. Raises :class:`JournalRefused` if it parses but
        must not be executed (unknown version, paths outside the KB).
        """
        raw = path.read_bytes()  # an I/O error is no verdict on the journal: it propagates
        if not raw:
            raise JournalUnreadable("it is empty")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise JournalUnreadable(f"it is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise JournalUnreadable("it is not a JSON object")
        if data.get("version") != JOURNAL_VERSION:
            raise JournalRefused(
                f"refusing journal {path}: it has version {data.get('version')!r}, and this "
                f"openkb understands version {JOURNAL_VERSION}",
                hint="finish it with the openkb version that wrote it",
            )
        try:
            journal = cls(
                txid=data["txid"],
                op=data["op"],
                docs=list(data["docs"]),
                actions=[],
                staging=list(data.get("staging", [])),
                status=data["status"],
                created=data.get("created", ""),
                pid=int(data.get("pid", 0)),
            )
            records = list(data["actions"])
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalUnreadable(f"it lacks a field ({exc})") from exc
        journal.actions = _trusted_actions(layout, journal, records, path)
        return journal


class JournalUnreadable(Exception):
    """A journal file that holds no journal: empty, torn or not JSON."""


def _trusted_actions(layout: KBLayout, journal: Journal, records: list,
                     path: Path) -> list[Action]:
    """The journal's actions, if recovery may execute them; else refuse it."""

    def refuse(why: str) -> JournalRefused:
        return JournalRefused(
            f"refusing journal {path}: {why}; it was not executed",
            hint="inspect it, then move it out of .openkb/journal and run `openkb verify`",
        )

    if not isinstance(journal.txid, str) or not TXID.match(journal.txid):
        raise refuse(f"malformed txid {journal.txid!r}")
    if path.name != f"{journal.txid}.json":
        raise refuse("its file name does not match its txid")
    if journal.status not in (ACTIVE, COMMITTED):
        raise refuse(f"unknown status {journal.status!r}")
    if journal.backup_dir(layout).is_symlink():
        # Rollback moves files out of it into the KB.
        raise refuse("its backup dir is a symlink")
    try:
        for staging in journal.staging:
            layout.resolve(staging, areas=(f"{layout.meta_dir.name}/staging",))
        return [actions.from_json(record, layout) for record in records]
    except (UnsafePath, actions.BadAction) as exc:
        raise refuse(str(exc)) from exc
