"""The failure ledger, as add and sync use it.

A file that fails is recorded with its stat fingerprint, its reason and
whether the failure is *permanent* (malformed, encrypted, not a supported
type, no text: the same bytes will fail the same way) or *transient*
(timeout, out of memory, a killed worker, an I/O error, a full disk). A
later run skips an unchanged permanent failure (reason ``failed-before``)
and tries a transient one again; ``retry_failed`` tries them all. An entry
goes when its file succeeds, changes (and then succeeds) or vanishes.

Only files that failed in this run make its exit code 1: one whose only
failures are known ones exits 0.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

from openkb.layout import KBLayout
from openkb.model import NO_SEQ, ScanEntry, Skipped
from openkb.registry import FailureRow, Registry
from openkb.scan import ScanResult
from openkb.statcache import may_write_caches

if TYPE_CHECKING:
    from openkb.ingest.report import AddReport

# What the same bytes may well get past next time. Everything else (a
# converter's verdict on the file itself) is permanent.
_TRANSIENT = re.compile(
    r"timed out|out of memory|killed|worker|cannot (?:stage|read|open|list)|vanished|"
    r"changed (?:while|after)|rolled back|no space|input/output|i/o error|"
    r"no longer a regular file", re.IGNORECASE)


def is_permanent(reason: str) -> bool:
    return _TRANSIENT.search(reason) is None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _fingerprint(entry: ScanEntry) -> tuple[int, int, int, int, int]:
    return (entry.dev, entry.ino, entry.size, entry.mtime_ns, entry.ctime_ns)


class Ledger:
    def __init__(self, registry: Registry, roots: list[str], *, retry_failed: bool,
                 layout: KBLayout) -> None:
        self.registry = registry
        self.layout = layout
        self.retry_failed = retry_failed
        self.known = registry.failures_under(roots) if roots else {}

    def known_failure(self, entry: ScanEntry) -> FailureRow | None:
        """The permanent failure recorded for this very file, unchanged since."""
        row = self.known.get(entry.path)
        if (row is None or self.retry_failed or not row.permanent or not entry.ino
                or row.fingerprint != _fingerprint(entry)):
            return None
        return row

    def skip_known(self, scan: ScanResult) -> list[ScanEntry]:
        """Move the scan's known permanent failures to its skipped list;
        returns the entries left, numbered again."""
        from openkb.sync.plan import without

        known = {}
        for entry in scan.entries:
            row = self.known_failure(entry)
            if row is not None:
                known[entry.seq] = Skipped(entry.display, "failed-before", row.reason)
        if not known:
            return scan.entries
        scan.skipped += known.values()
        return without(scan.entries, set(known))

    def settle(self, tried: list[ScanEntry], report: AddReport) -> None:
        """Record this run's failures; forget files that got in, and files
        that are gone. Files the run never reached (interrupted) keep their
        entries as they were."""
        failed = {f.seq: f.reason for f in report.failed if f.seq != NO_SEQ}
        # Of the files that got in or were skipped, only those the ledger
        # holds matter: a set of those, not of every file the run added.
        listed = {entry.display for entry in tried if entry.path in self.known}
        done = {display for _, display in report.added if display in listed} | {
            display for _, display in report.updated if display in listed} | {
            s.display for s in report.skipped
            if s.reason != "failed-before" and s.display in listed}
        now = _now()
        record, forget = [], []
        for entry in tried:
            reason = failed.get(entry.seq)
            before = self.known.get(entry.path)
            if reason is not None and entry.ino:
                record.append(FailureRow(
                    entry.path, *_fingerprint(entry), reason, is_permanent(reason),
                    before.first_seen if before else now, now,
                    before.tries + 1 if before else 1))
            elif before is not None and entry.display in done:
                forget.append(entry.path)
        scan_rows, scan_forget = self._scan_failures(report, now)
        record += scan_rows
        forget += scan_forget
        present = {entry.path for entry in tried}
        forget += [origin for origin in self.known
                   if origin not in present and not os.path.lexists(origin)]
        recorded = {row.origin for row in record}
        forget = [origin for origin in dict.fromkeys(forget) if origin not in recorded]
        if (record or forget) and may_write_caches(self.layout):
            self.registry.record_failures(record, forget)

    def _scan_failures(self, report: AddReport, now: str) -> tuple[list[FailureRow], list[str]]:
        """What the scan itself could not read (a file it cannot stat, a
        folder it cannot list: permission denied, an I/O error) is recorded
        too, without a stat fingerprint (there is none to take), so
        `openkb failures` lists it; such a failure is never skipped (the
        scan meets it before the ledger could), and its entry goes once the
        scan gets past it."""
        failed = {os.path.abspath(f.display): f.reason for f in report.failed
                  if f.seq == NO_SEQ}
        record = []
        for origin, reason in failed.items():
            before = self.known.get(origin)
            record.append(FailureRow(
                origin, 0, 0, 0, 0, 0, reason, is_permanent(reason),
                before.first_seen if before else now, now, before.tries + 1 if before else 1))
        forget = [origin for origin, row in self.known.items()
                  if not row.ino and origin not in failed]
        return record, forget
