"""`openkb sync --dry-run`: the plan of a sync, and nothing changed.

It scans and decides as the sync would (moves and removals, the guard), and
says for each remaining file whether it would be added, updated or skipped,
hashing it as the add would. Names are predicted as the add would hand them
out; another process committing meanwhile may change them.
"""

from __future__ import annotations

import time

from openkb.digest import sha256_file
from openkb.errors import UsageError
from openkb.kb import KB
from openkb.model import FileFailure, Skipped
from openkb.prefilter import NameReservations
from openkb.progress import Progress
from openkb.scan import scan_inputs
from openkb.statcache import StatCache
from openkb.sync import SyncOptions, SyncReport
from openkb.sync.plan import check_removals, plan_sync


def preview_sync(kb: KB, inputs: list[str], roots: list[str], progress: Progress,
                 options: SyncOptions) -> SyncReport:
    started = time.monotonic()
    report = SyncReport(dry_run=True, kept_raw=options.keep_raw)
    with progress.run(kb.command, dry_run=True, inputs=inputs[:20]) as outcome:
        with progress.span("scan", "scan"):
            scan = scan_inputs(inputs, kb_root=kb.layout.root,
                               follow_symlinks=kb.config.follow_symlinks)
        registry = kb.reader(progress)
        # Read-only: what it learns is not written (a dry run changes nothing).
        cache = StatCache(registry, scan.entries, rehash=options.rehash)
        plan = plan_sync(registry, scan, roots, cache)
        report.documents_under = plan.under
        report.skipped += scan.skipped
        report.failed += scan.failed
        report.moved = [(m.name, m.old_origin, m.entry.display) for m in plan.moves]
        report.removed = [(r.name, r.origin) for r in plan.removals]
        try:
            assert options.max_delete is not None
            check_removals(len(plan.removals), plan.under, options.max_delete)
        except UsageError as exc:
            report.refused = str(exc)
        moved = {m.entry.seq for m in plan.moves}
        reservations = NameReservations(kb.layout, registry)
        seen: dict[str, str] = {}
        for entry in scan.entries:
            if entry.seq in moved:
                continue
            cached = cache.fresh_sha(entry)
            holder = registry.name_by_sha(cached) if cached else None
            if holder is not None:
                report.skipped.append(Skipped(entry.display, "unchanged", holder))
                continue
            try:
                sha = cached or sha256_file(entry.path)
            except OSError as exc:
                report.failed.append(FileFailure(entry.seq, entry.display,
                                                 f"cannot read: {exc.strerror}"))
                continue
            holder = registry.name_by_sha(sha) or seen.get(sha)
            if holder is not None:
                report.skipped.append(Skipped(entry.display, "duplicate", holder))
                continue
            updating = registry.names_by_origin(entry.path)
            if updating:
                name = updating[0]
                report.updated.append((name, entry.display))
            else:
                name = reservations.reserve(entry.display)
                report.added.append((name, entry.display))
            seen[sha] = name
        report.wall_s = time.monotonic() - started
        outcome.exit_code = report.exit_code
        outcome.fields.update(dry_run=True, moved=len(report.moved),
                              removed=len(report.removed), added=len(report.added),
                              updated=len(report.updated))
    return report
