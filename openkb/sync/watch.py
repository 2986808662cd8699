"""`openkb watch`: a sync, then a sync again whenever the folders change.

Filesystem events come from watchfiles (Rust notify underneath). Each batch
is a sync of the watched paths: the stat cache makes the files that did not
change cost one stat each and no read, and a sync of the whole paths keeps
the mass-delete guard meaningful (a share of everything watched, not of
one sub-folder). A batch starts once its files have stopped changing: no
event, and the same size and mtime, for the debounce period. Temporary and
partial files (``~``, ``.swp``, ``.tmp``, ``.part``, ``.crdownload``) and
hidden names do not start one, and neither does anything inside the KB.

The KB lock is held only while a batch commits, so other commands run
between batches. A watched path that disappears (an unmounted drive)
pauses the watch with a warning and deletes nothing; it resumes, with a
catch-up sync, when the path is back. ``stop`` (set by SIGINT or SIGTERM in
the CLI) ends the watch after the batch in flight.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from openkb.errors import OpenKBError
from openkb.kb import KB, WaitCallback
from openkb.progress import Progress
from openkb.runs import RunRecord
from openkb.sync import SyncOptions, SyncReport, sync_paths

IGNORED_SUFFIXES = ("~", ".swp", ".swx", ".tmp", ".part", ".crdownload")
TICK_MS = 250  # how often the loop wakes without events: debounce and stop checks


@dataclass
class WatchBatch:
    number: int
    touched: int  # paths that changed since the last batch (0: the catch-up sync)
    report: SyncReport | None = None
    error: str | None = None  # why the batch changed nothing (guard, missing path)


@dataclass
class WatchReport:
    batches: int = 0
    errors: int = 0
    last_error: str | None = None
    touched: list[str] = field(default_factory=list)


def ignored(path: str, roots: list[str], kb_root: str) -> bool:
    """Not a change worth a batch: temporary, partial, hidden, or the KB's own."""
    if path == kb_root or path.startswith(kb_root + os.sep):
        return True
    name = os.path.basename(path)
    if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
        return True
    for root in roots:
        if path.startswith(root + os.sep):
            return any(part.startswith(".") for part in
                       os.path.relpath(path, root).split(os.sep))
    return False


class Watcher:
    def __init__(self, kb_dir: str | None, paths: list[str], progress: Progress, *,
                 jobs: int | None, debounce_s: float, stop: threading.Event,
                 on_batch: Callable[[WatchBatch], None] | None = None,
                 lock_timeout: float | None = None,
                 on_lock_wait: WaitCallback | None = None) -> None:
        self.kb_dir = kb_dir
        self.paths = paths
        self.roots = [os.path.abspath(p) for p in paths]
        self.progress = progress
        self.jobs = jobs
        self.debounce_s = debounce_s
        self.stop = stop
        self.on_batch = on_batch
        self.lock_timeout = lock_timeout
        self.on_lock_wait = on_lock_wait
        self.report = WatchReport()
        kb = KB.open(kb_dir, "openkb watch")
        self.layout = kb.layout
        kb.close()
        self.kb_root = os.path.realpath(self.layout.root)
        self.record = RunRecord(progress.run_id, os.getpid(), "openkb watch", time.time(),
                                time.time(), phase="watching")

    def run(self) -> WatchReport:
        with self.progress.run("openkb watch", paths=self.paths[:20]) as outcome:
            self.record.save(self.layout)
            try:
                while not self.stop.is_set():
                    missing = [p for p in self.paths if not os.path.isdir(p)
                               and not os.path.isfile(p)]
                    if missing:
                        self._paused(missing)
                        continue
                    try:
                        self._follow()
                    except FileNotFoundError:
                        continue  # a path went away as the watch began: pause
            finally:
                self.record.delete(self.layout)
            outcome.fields.update(batches=self.report.batches, errors=self.report.errors)
        return self.report

    def _paused(self, missing: list[str]) -> None:
        """Wait for the missing paths to come back (or for stop)."""
        error = f"{missing[0]} does not exist: the watch is paused, nothing is removed"
        if self.report.last_error != error:
            self._failed(WatchBatch(self.report.batches, 0), error)
        self.stop.wait(1.0)

    def _follow(self) -> None:
        """Follow events until stop, or until a watched path disappears."""
        import watchfiles

        pending: dict[str, tuple[int, int] | None] = {}
        last_event = time.monotonic()
        armed = False
        for changes in watchfiles.watch(
                *self.roots, watch_filter=None, debounce=TICK_MS, step=50,
                stop_event=self.stop, rust_timeout=TICK_MS, yield_on_timeout=True,
                raise_interrupt=False):
            if not armed:
                # The watcher is armed by now (this is its first tick): catch
                # up on what changed while nobody watched; what changes
                # during the catch-up is queued, not lost.
                armed = True
                self._batch(0)
            wanted = [p for _, p in changes if not ignored(p, self.roots, self.kb_root)]
            now = time.monotonic()
            if wanted:
                last_event = now
                for path in wanted:
                    pending[path] = _size_mtime(path)
            if any(not os.path.exists(p) for p in self.paths):
                return  # a watched path is gone: pause
            if not pending or now - last_event < self.debounce_s:
                continue
            if not _settled(pending):
                last_event = now  # still being written: wait another period
                continue
            self.report.touched = sorted(pending)
            self._batch(len(pending))
            pending.clear()

    def _batch(self, touched: int) -> None:
        batch = WatchBatch(self.report.batches + 1, touched)
        self.progress.emit("watch_batch", "start", "watch", paths=touched,
                           batch=batch.number, watched=len(self.paths))
        started = time.monotonic()
        # Each batch is a run of its own (its own id, staging and terminal
        # event), told to the same listeners.
        progress = Progress()
        progress.listeners = list(self.progress.listeners)
        try:
            with _opened(self.kb_dir) as kb:
                batch.report = sync_paths(kb, self.paths, progress, SyncOptions(),
                                          jobs=self.jobs, lock_timeout=self.lock_timeout,
                                          on_lock_wait=self.on_lock_wait)
        except OpenKBError as exc:
            self._failed(batch, str(exc))
            return
        finally:
            self.report.batches = batch.number
            self.record.counts = {"batches": self.report.batches, "errors": self.report.errors}
            self.record.last_progress = time.time()
            self.record.save(self.layout)
        report = batch.report
        stopped: dict[str, str] = {}
        if report.out_of_space is not None:  # kept what fit; the next batch tries the rest
            self._note_error(report.out_of_space.message)
            stopped = {"outcome": "disk_full", "error": report.out_of_space.message[:1000]}
        self.progress.emit("watch_batch", "done", "watch", paths=touched, batch=batch.number,
                           watched=len(self.paths),
                           dur_ms=round((time.monotonic() - started) * 1000, 1),
                           counts={"added": len(report.added), "updated": len(report.updated),
                                   "moved": len(report.moved), "removed": len(report.removed),
                                   "failed": len(report.failed)}, **stopped)
        if self.on_batch is not None:
            self.on_batch(batch)

    def _failed(self, batch: WatchBatch, error: str) -> None:
        batch.error = error
        self._note_error(error)
        self.progress.emit("watch_batch", "done", "watch", batch=batch.number, outcome="error",
                           watched=len(self.paths), error=error[:1000])
        if self.on_batch is not None:
            self.on_batch(batch)


    def _note_error(self, error: str) -> None:
        """For `openkb status`: the watch's last error."""
        self.report.errors += 1
        self.report.last_error = error
        self.record.phase = f"watching; last error: {error}"[:300]
        self.record.save(self.layout)


class _opened:
    def __init__(self, kb_dir: str | None) -> None:
        self.kb = KB.open(kb_dir, "openkb watch")

    def __enter__(self) -> KB:
        return self.kb

    def __exit__(self, *exc: object) -> None:
        self.kb.close()


def _size_mtime(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _settled(pending: dict[str, tuple[int, int] | None]) -> bool:
    """Have the pending files kept their size and mtime since they were
    last seen? Records what they are now either way."""
    settled = True
    for path, seen in pending.items():
        now = _size_mtime(path)
        if now != seen:
            pending[path] = now
            settled = False
    return settled
