"""One `openkb sync`: an add run whose scan first commits what vanished.

The moves and removals commit before any file is prepared, under the lock,
each decision checked again there (another process may have changed the
document since the plan was made). They go in transactions of at most
:data:`VANISHED_PER_TRANSACTION` documents: each one is whole or absent
after a crash, and a very large sync does not build one huge journal.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import TYPE_CHECKING

from openkb import commit  # its names load on first use
from openkb.diskspace import is_disk_full
from openkb.errors import CommitFailed
from openkb.ingest.report import AddReport, CancelToken
from openkb.ingest.run import AddRun
from openkb.kb import KB, WaitCallback
from openkb.model import ScanEntry, Skipped
from openkb.progress import Progress
from openkb.registry import OriginRow, Registry
from openkb.scan import ScanResult
from openkb.statcache import StatCache
from openkb.sync import SyncOptions, SyncReport
from openkb.sync.ledger import Ledger
from openkb.sync.plan import MoveCandidate, SyncPlan, check_removals, plan_sync, without

if TYPE_CHECKING:
    from openkb.llm.summarizer import Summarizer

VANISHED_PER_TRANSACTION = 500

log = logging.getLogger("openkb")


class LedgerAddRun(AddRun):
    """An add run that consults the failure ledger (:mod:`openkb.sync.ledger`)
    before the pipeline and records in it what failed after."""

    def __init__(self, kb: KB, progress: Progress, jobs: int, cancel: CancelToken,
                 lock_timeout: float | None, on_lock_wait: WaitCallback | None,
                 summarizer: Summarizer | None = None, *, rehash: bool = False,
                 retry_failed: bool = False) -> None:
        super().__init__(kb, progress, jobs, cancel, lock_timeout, on_lock_wait, summarizer,
                         rehash=rehash)
        self.retry_failed = retry_failed
        self.ledger: Ledger | None = None
        self.tried: list[ScanEntry] = []

    def _scan(self, inputs: list[str]) -> ScanResult:
        scan = super()._scan(inputs)
        # The inputs (where the scan's own failures are), and where the
        # files are (a file named through a symlink is its target).
        roots = [os.path.abspath(p) for p in inputs]
        roots += [os.path.commonpath([e.path for e in scan.entries])] if scan.entries else []
        return self._skip_known_failures(scan, roots)

    def _skip_known_failures(self, scan: ScanResult, roots: list[str]) -> ScanResult:
        self.ledger = Ledger(self.kb.reader(self.progress), roots,
                             retry_failed=self.retry_failed, layout=self.layout)
        self.tried = self.ledger.skip_known(scan)
        return ScanResult(self.tried, scan.skipped, scan.failed)

    def execute(self, inputs: list[str]) -> AddReport:
        try:
            return super().execute(inputs)
        finally:
            if self.ledger is not None:
                try:
                    self.ledger.settle(self.tried, self.report)
                except (OSError, sqlite3.Error) as exc:
                    log.warning("could not update the failure ledger (%s)", exc)


class SyncRun(LedgerAddRun):
    def __init__(self, kb: KB, progress: Progress, jobs: int, cancel: CancelToken,
                 lock_timeout: float | None, on_lock_wait: WaitCallback | None,
                 roots: list[str], options: SyncOptions) -> None:
        super().__init__(kb, progress, jobs, cancel, lock_timeout, on_lock_wait,
                         rehash=options.rehash, retry_failed=options.retry_failed)
        self.roots = roots
        self.options = options
        self.tally.report = SyncReport(jobs=jobs, kept_raw=options.keep_raw)

    @property
    def sync_report(self) -> SyncReport:
        report = self.tally.report
        assert isinstance(report, SyncReport)
        return report

    def _scan(self, inputs: list[str]) -> ScanResult:
        # The plan sees the whole scan: a file that fails is still there.
        scan = AddRun._scan(self, inputs)
        registry = self.kb.reader(self.progress)
        self.stat_cache = StatCache(registry, scan.entries, rehash=self.rehash,
                                    started_ns=self.started_ns, layout=self.layout)
        with self.progress.span("sync_plan", "scan") as done:
            plan = plan_sync(registry, scan, self.roots, self.stat_cache)
            done.update(moves=len(plan.moves), removals=len(plan.removals),
                        documents_under=plan.under)
        self.sync_report.documents_under = plan.under
        assert self.options.max_delete is not None
        check_removals(len(plan.removals), plan.under, self.options.max_delete)
        moved: set[int] = set()
        if (plan.moves or plan.removals) and not self.cancel.stop_requested:
            self._phase("commit")
            moved = self._commit_vanished(plan)
            for _name, origin in self.sync_report.removed:
                self.stat_cache.forget(origin)
        # Released on a full disk for the removals (openkb.sync.sync_paths):
        # taken back before anything is added.
        self.kb.reserve.ensure(headroom=1)
        rest = without(scan.entries, moved)
        unchanged = self._unchanged(registry, rest)
        if unchanged:
            # Taken out before the pipeline: a sync with nothing else to do
            # starts no worker and imports no converter.
            scan.skipped += unchanged.values()
            rest = without(rest, set(unchanged))
        self.stat_cache.flush()  # what the plan learnt, even if nothing is left to add
        return self._skip_known_failures(ScanResult(rest, scan.skipped, scan.failed),
                                         self.roots)

    def _unchanged(self, registry: Registry, entries: list[ScanEntry]) -> dict[int, Skipped]:
        """The entries the stat cache vouches for, whose content a document holds."""
        assert self.stat_cache is not None
        fresh = [(entry, sha) for entry in entries
                 if (sha := self.stat_cache.fresh_sha(entry)) is not None]
        holders = registry.holders_of([sha for _, sha in fresh])
        return {entry.seq: Skipped(entry.display, "unchanged", holders[sha])
                for entry, sha in fresh if sha in holders}

    def _commit_vanished(self, plan: SyncPlan) -> set[int]:
        """Commit the plan's moves and removals; the scan positions of the
        files that turned out to be moves."""
        moved: set[int] = set()
        with self.kb.exclusive(self.progress, timeout=self.committer.lock_timeout,
                               on_wait=self.on_lock_wait):
            registry = self.kb.registry
            moves = [m for m in plan.moves if _still_moved(registry, m)]
            removals = [r for r in plan.removals if _still_vanished(registry, r)]
            step = VANISHED_PER_TRANSACTION
            for start in range(0, max(len(moves), len(removals)), step):
                self._commit_vanished_group(registry, moves[start:start + step],
                                            removals[start:start + step], moved)
        return moved

    def _commit_vanished_group(self, registry: Registry, moves: list[MoveCandidate],
                               removals: list[OriginRow], moved: set[int]) -> None:
        changes = commit.ChangeSet(
            op="sync", removed=[commit.Removal(r.name, self.options.keep_raw) for r in removals],
            moved=[commit.Move(m.name, m.entry.path) for m in moves])
        try:
            outcome = commit.commit_changes(self.layout, registry, changes, self.progress)
        except CommitFailed as exc:
            if not is_disk_full(exc) or len(moves) + len(removals) < 2:
                raise
            # A full disk (the reserve's room was not enough for this many):
            # halves need less room, and each one that commits frees some,
            # once the WAL (grown by the attempt) is given back.
            for half_moves, half_removals in _halves(moves, removals):
                registry.shrink_wal()
                self._commit_vanished_group(registry, half_moves, half_removals, moved)
            return
        for move in moves:
            moved.add(move.entry.seq)
            self.sync_report.moved.append((move.name, move.old_origin, move.entry.display))
        self.sync_report.removed += [(r.name, r.origin) for r in removals]
        self.progress.emit("committed", "point", "commit", txid=outcome.txid,
                           doc=sorted(changes_names(changes))[:20],
                           counts=self.counts.as_dict())


def _halves(moves: list[MoveCandidate], removals: list[OriginRow]
            ) -> list[tuple[list[MoveCandidate], list[OriginRow]]]:
    """Two smaller groups, each not empty (the caller has at least two changes)."""
    if len(removals) > 1:
        return [(moves, removals[:len(removals) // 2]), ([], removals[len(removals) // 2:])]
    if len(moves) > 1:
        return [(moves[:len(moves) // 2], removals), (moves[len(moves) // 2:], [])]
    return [(moves, []), ([], removals)]


def changes_names(changes: commit.ChangeSet) -> set[str]:
    return {r.name for r in changes.removed} | {m.name for m in changes.moved}


def _still_vanished(registry: Registry, row: OriginRow) -> bool:
    now = registry.document(row.name)
    return now is not None and now.origin == row.origin and now.sha256 == row.sha256


def _still_moved(registry: Registry, move: MoveCandidate) -> bool:
    now = registry.document(move.name)
    return (now is not None and now.origin == move.old_origin
            and not registry.names_by_origin(move.entry.path))
