"""Recovery: finish every transaction a crash left behind, and sweep leftovers.

Runs under the exclusive lock, from :meth:`openkb.kb.KB.exclusive` (every
writing command, before it does anything) and from `openkb recover`. For each
journal, the registry decides, by the txid in the journal's file name: in
``transactions`` means the commit point passed, so the cleanup is finished
(roll forward); otherwise every action is undone (roll back). A status
written in the journal is never trusted for this: a tampered journal must
not be able to make recovery discard backups.

A journal file that holds no journal (empty, torn, not JSON: a power cut
can leave that of a file whose data never reached the disk) is decided by
its name alone. Committed: its cleanup is finished from what is on disk
(its backup dir here, its staging by the leftover sweep). Not committed: it
cannot have changed anything, since a journal is fsynced before the first
change it describes, so it is removed, and the removal is logged.
"""

from __future__ import annotations

import calendar
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from openkb import fsio
from openkb.commit import undo
from openkb.commit.journal import Journal, JournalUnreadable
from openkb.crashpoints import crashpoint
from openkb.errors import JournalRefused, RecoveryFailed
from openkb.layout import KBLayout
from openkb.lock import human_duration
from openkb.pending import RecoveryReport, leftover_paths, pending_journal_paths, txid_of
from openkb.progress import Progress
from openkb.registry import Registry

log = logging.getLogger("openkb")


def drain_pending_journals(layout: KBLayout, registry: Registry, progress: Progress,
                           report: RecoveryReport | None = None) -> RecoveryReport:
    """Finish every journal in creation order. Raises JournalRefused, leaving
    that journal (and any after it) untouched, if one cannot be trusted."""
    report = report or RecoveryReport()
    paths = pending_journal_paths(layout)
    if not paths:
        return report
    with progress.span("recovery", "recovery", journals=len(paths)):
        crashpoint("recovery.before")
        for path in paths:
            try:
                _finish_journal(layout, registry, path, report)
            except OSError as exc:
                # Every undo step is idempotent, so the kept journal can be
                # run again once the cause is gone.
                raise RecoveryFailed(
                    f"finishing the transaction of journal {path} failed: {exc}; "
                    "the journal is kept and no command will write until it is finished",
                    hint="fix the cause (free space, check the disk), then run `openkb recover`",
                ) from exc
        crashpoint("recovery.after")
    return report


def _finish_journal(layout: KBLayout, registry: Registry, path: Path,
                    report: RecoveryReport) -> None:
    txid = txid_of(path)
    assert txid is not None  # pending_journal_paths lists only journal names
    committed = registry.has_transaction(txid)
    try:
        journal = Journal.load(layout, path)
    except JournalUnreadable as exc:
        crashpoint("recovery.journal")
        undo.retire_journal(layout, txid)
        if committed:
            report.rolled_forward.append(txid)
        else:
            log.warning("removed journal %s: %s, and its transaction never reached its "
                        "commit point, so it had changed nothing", path.name, exc)
            report.discarded.append(txid)
        return
    crashpoint("recovery.journal")
    if committed:
        undo.finish(layout, journal, sweep_staging=True, sweep_tmp=True)
        report.rolled_forward.append(txid)
    else:
        undo.roll_back(layout, journal, keep_staged=False)
        report.rolled_back.append(txid)


# Who finishes a pending journal: every command that opens the KB does, when
# it can take the lock, except `verify` without --repair, which only looks.
_NEXT_COMMAND = "the next openkb command other than a plain `verify`, or `openkb recover`,"
# A journal's ``created``, as openkb.commit.plan.utc_now writes it (UTC).
_CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _age(created: str) -> str:
    """`` 2m10s ago``, from a journal's creation time, or nothing if unknown."""
    try:
        when = calendar.timegm(time.strptime(created, _CREATED_FORMAT))
    except ValueError:
        return ""
    return f" {human_duration(time.time() - when)} ago"


@dataclass(frozen=True)
class PendingJournal:
    """What recovery will do with one pending journal, in words that are true."""

    path: Path
    refused: bool  # no command will write until a person moves it
    message: str


def describe_journal(layout: KBLayout, registry: Registry, path: Path) -> PendingJournal:
    """Apply recovery's rules to a pending journal without acting on it."""
    txid = txid_of(path) or ""
    committed = registry.has_transaction(txid)
    try:
        journal = Journal.load(layout, path)
    except JournalUnreadable as exc:
        if committed:
            return PendingJournal(path, False, (
                f"the journal of a committed transaction: {exc} ({_NEXT_COMMAND} finishes "
                "its cleanup)"))
        return PendingJournal(path, False, (
            f"a journal that never became durable: {exc}; its transaction never committed "
            f"and changed nothing ({_NEXT_COMMAND} removes it)"))
    except JournalRefused as exc:
        return PendingJournal(path, True, (
            f"{exc}. Every writing command refuses to run until it is gone: {exc.hint}"))
    except OSError as exc:
        return PendingJournal(path, True, (
            f"cannot be read ({exc.strerror or exc}); fix the disk, then run `openkb recover`"))
    how = "finishes its cleanup" if committed else "rolls it back"
    return PendingJournal(path, False, (
        f"{journal.op} of {len(journal.docs)} document(s) left unfinished by pid "
        f"{journal.pid}{_age(journal.created)} ({_NEXT_COMMAND} {how})"))


def sweep_leftovers(layout: KBLayout, report: RecoveryReport | None = None) -> RecoveryReport:
    """Remove :func:`leftover_paths`. Call only with no journal pending and
    the lock held."""
    report = report or RecoveryReport()
    for path in leftover_paths(layout):
        fsio.remove_tree(path, sync=False)
        report.swept.append(layout.rel(path))
    return report
