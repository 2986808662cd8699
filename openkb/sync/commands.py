"""The API of the commands that keep a KB in step with folders: `openkb
sync`, `watch` and `failures`. :mod:`openkb.api` re-exports them (loaded on
first use), so the CLI still reaches the library only through it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from openkb.errors import UsageError
from openkb.ingest.report import CancelToken
from openkb.kb import KB, WaitCallback
from openkb.progress import Progress
from openkb.registry import FailureRow
from openkb.sync import SyncOptions, SyncReport, sync_paths
from openkb.sync.watch import WatchBatch, WatchReport


def sync(kb_dir: str | None, paths: list[str], progress: Progress, *, jobs: int | None = None,
         dry_run: bool = False, keep_raw: bool = False, max_delete: str | int | None = None,
         rehash: bool = False, retry_failed: bool = False, cancel: CancelToken | None = None,
         lock_timeout: float | None = None, on_lock_wait: WaitCallback | None = None,
         executor: str | None = None, scheduler: str | None = None) -> SyncReport:
    """What `add` does for ``paths``, then the documents that came from
    under them and are gone there are moved (same content elsewhere) or
    removed, unless more would go than ``max_delete`` allows. ``executor``
    and ``scheduler``: as for :func:`openkb.api.add`."""
    if not paths:
        raise UsageError("name at least one file or directory to sync", argument="paths")
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1", argument="jobs")
    from openkb.ingest import with_executor

    with KB.open(kb_dir, "openkb sync") as kb:
        kb.config = with_executor(kb.config, executor, scheduler)
        return sync_paths(kb, paths, progress,
                          SyncOptions(dry_run=dry_run, keep_raw=keep_raw, max_delete=max_delete,
                                      rehash=rehash, retry_failed=retry_failed),
                          jobs=jobs, cancel=cancel, lock_timeout=lock_timeout,
                          on_lock_wait=on_lock_wait)


def watch(kb_dir: str | None, paths: list[str], progress: Progress, *, stop: threading.Event,
          jobs: int | None = None, debounce_s: float = 2.0,
          on_batch: Callable[[WatchBatch], None] | None = None,
          lock_timeout: float | None = None,
          on_lock_wait: WaitCallback | None = None) -> WatchReport:
    """Sync ``paths``, then sync them again after each burst of changes,
    until ``stop`` is set (the batch in flight finishes first)."""
    if not paths:
        raise UsageError("name at least one file or directory to watch", argument="paths")
    if debounce_s < 0:
        raise UsageError("debounce must be 0 or more seconds", argument="debounce_s")
    from openkb.sync.plan import sync_roots
    from openkb.sync.watch import Watcher

    sync_roots(paths)  # a path that does not exist is a usage error here too
    return Watcher(kb_dir, paths, progress, jobs=jobs, debounce_s=debounce_s, stop=stop,
                   on_batch=on_batch, lock_timeout=lock_timeout,
                   on_lock_wait=on_lock_wait).run()


def failures(kb_dir: str | None, progress: Progress) -> list[FailureRow]:
    """The failure ledger: files that failed and have not changed or
    succeeded since, with why, when and how often."""
    with KB.open(kb_dir, "openkb failures") as kb:
        return kb.reader(progress).failures()
