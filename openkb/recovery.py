"""Recovery: finish every transaction a crash left behind, and sweep leftovers.

Runs under the exclusive lock, from :meth:`openkb.kb.KB.exclusive` (every
writing command, before it does anything) and from `openkb recover`. For each
journal, the registry decides: its txid in ``transactions`` means the commit
point passed, so the cleanup is finished (roll forward); otherwise every
action is undone (roll back). The journal's own "committed" mark is not
trusted for this: it is written without fsync, and a tampered journal must
not be able to make recovery discard backups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from openkb import fsio
from openkb.commit import undo
from openkb.commit.journal import Journal, pending_journal_paths
from openkb.crashpoints import crashpoint
from openkb.errors import RecoveryFailed
from openkb.layout import KBLayout
from openkb.lock import run_owner_alive
from openkb.progress import Progress
from openkb.registry import Registry


@dataclass
class RecoveryReport:
    rolled_back: list[str] = field(default_factory=list)  # txids
    rolled_forward: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)  # KB-relative paths removed

    @property
    def anything(self) -> bool:
        return bool(self.rolled_back or self.rolled_forward or self.swept)


def has_pending_journals(layout: KBLayout) -> bool:
    return bool(pending_journal_paths(layout))


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
            journal = Journal.load(layout, path)
            crashpoint("recovery.journal")
            try:
                if registry.has_transaction(journal.txid):
                    undo.finish(layout, journal, sweep_staging=True, sweep_tmp=True)
                    report.rolled_forward.append(journal.txid)
                else:
                    undo.roll_back(layout, journal, keep_staged=False)
                    report.rolled_back.append(journal.txid)
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


def leftover_paths(layout: KBLayout) -> list[Path]:
    """What no journal accounts for: backup dirs without a journal, temp
    files in private dirs, staging and run records of dead processes. Only
    meaningful with no journal pending (a pending journal owns its backups)."""
    found = []
    for directory in (layout.journal_dir, layout.meta_dir, layout.runs_dir):
        for entry in _entries(directory):
            path = directory / entry
            orphan_backup = directory == layout.journal_dir and path.is_dir()
            temp = fsio.is_tmp_name(entry) or entry.endswith(".tmp")
            stale_run = directory == layout.runs_dir and not run_owner_alive(entry)
            if orphan_backup or temp or stale_run:
                found.append(path)
    found.extend(layout.staging_dir / entry for entry in _entries(layout.staging_dir)
                 if not run_owner_alive(entry))
    return found


def sweep_leftovers(layout: KBLayout, report: RecoveryReport | None = None) -> RecoveryReport:
    """Remove :func:`leftover_paths`. Call only with no journal pending and
    the lock held."""
    report = report or RecoveryReport()
    for path in leftover_paths(layout):
        fsio.remove_tree(path, sync=False)
        report.swept.append(layout.rel(path))
    return report


def _entries(directory) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
