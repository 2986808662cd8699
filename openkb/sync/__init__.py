"""`openkb sync`: keep a KB in step with folders that live on.

A sync of some paths does what `add` does for them, and also takes away
what is gone: a document whose origin lies under one of the paths and that
the scan no longer finds there is removed, by the same journaled
transaction as `openkb remove` (:mod:`openkb.commit`), unless a new file
holds its content, in which case it was moved: it keeps its name and pages
and only its origin changes (a transaction too, so it is logged and
recovered like any other).

- :mod:`~openkb.sync.plan`: vanished, moved and removed, decided from one
  scan; the mass-delete guard;
- :mod:`~openkb.sync.run`: the run (an add run that commits the plan's
  moves and removals first, so the names they free are reused);
- :mod:`~openkb.sync.preview`: ``dry_run``, the plan without a change;
- :mod:`~openkb.sync.ledger`: the failure ledger, which `add` consults too.

`add` never removes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from openkb.ingest.report import AddReport, CancelToken

if TYPE_CHECKING:
    from openkb.kb import KB, WaitCallback
    from openkb.llm.summarizer import Summarizer
    from openkb.progress import Progress

__all__ = ["SyncOptions", "SyncReport", "add_paths", "sync_paths"]


@dataclass
class SyncOptions:
    dry_run: bool = False
    keep_raw: bool = False  # removed documents' originals go to attic/
    max_delete: str | int | None = None  # None: the config's sync_max_delete
    rehash: bool = False  # ignore the stat cache
    retry_failed: bool = False  # try files the failure ledger says failed for good


@dataclass
class SyncReport(AddReport):
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # (name, from, to)
    removed: list[tuple[str, str]] = field(default_factory=list)  # (name, origin)
    dry_run: bool = False
    kept_raw: bool = False
    documents_under: int = 0  # documents whose origin lies under the paths, before
    # A dry run whose sync the mass-delete guard would refuse: why.
    refused: str | None = None

    @property
    def exit_code(self) -> int:
        from openkb.errors import EXIT_USAGE

        return EXIT_USAGE if self.refused else super().exit_code


def sync_paths(kb: KB, inputs: list[str], progress: Progress, options: SyncOptions, *,
               jobs: int | None = None, cancel: CancelToken | None = None,
               lock_timeout: float | None = None,
               on_lock_wait: WaitCallback | None = None) -> SyncReport:
    # Imported here, as add's run is: it brings the converters.
    from openkb.sync.plan import parse_max_delete, sync_roots

    roots = sync_roots(inputs)
    if options.max_delete is None:
        options.max_delete = kb.config.sync_max_delete
    parse_max_delete(options.max_delete)  # a bad value is a usage error before any work
    if options.dry_run:
        from openkb.sync.preview import preview_sync

        return preview_sync(kb, inputs, roots, progress, options)
    from openkb.sync.run import SyncRun

    # On a full disk, the reserve makes room for the removals (openkb.diskspace):
    # released under the lock, before the run opens the registry for writing.
    if kb.reserve.short():
        with kb.exclusive(progress, timeout=lock_timeout, on_wait=on_lock_wait,
                          release_reserve=True):
            pass
    run = SyncRun(kb, progress, jobs or kb.config.jobs, cancel or CancelToken(), lock_timeout,
                  on_lock_wait, roots, options)
    report = run.execute(inputs)
    assert isinstance(report, SyncReport)
    return report


def add_paths(kb: KB, inputs: list[str], progress: Progress, *, jobs: int | None = None,
              cancel: CancelToken | None = None, lock_timeout: float | None = None,
              on_lock_wait: WaitCallback | None = None, summarizer: Summarizer | None = None,
              rehash: bool = False, retry_failed: bool = False, executor: str | None = None,
              scheduler: str | None = None) -> AddReport:
    """`openkb add`: :func:`openkb.ingest.add_paths`, with the failure ledger."""
    from openkb.ingest import with_executor
    from openkb.sync.run import LedgerAddRun

    kb.config = with_executor(kb.config, executor, scheduler)
    run = LedgerAddRun(kb, progress, jobs or kb.config.jobs, cancel or CancelToken(),
                       lock_timeout, on_lock_wait, summarizer, rehash=rehash,
                       retry_failed=retry_failed)
    return run.execute(inputs)
