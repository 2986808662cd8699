"""One `openkb add`: scan, prefilter, prepare in parallel, commit in order.

The loop in :meth:`AddRun._pipeline` turns four small pieces: admit
prefiltered files into the bounded :class:`~openkb.ingest.window.Window`,
hand their tasks to the :class:`~openkb.ingest.dispatch.Dispatcher`, and,
once the window says the prepared head is worth it, commit that group with
the :class:`~openkb.ingest.committer.GroupCommitter`.

Ctrl-C once (``cancel.stop_requested``): the commit in flight finishes, the
rest is discarded, the run reports itself interrupted. Twice: the handler
raises KeyboardInterrupt, the commit in flight rolls back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from openkb import commit
from openkb.diskspace import (
    DiskFull,
    OutOfSpace,
    free_bytes,
    full_disk_cause,
    is_disk_full_reason,
    out_of_space,
)
from openkb.errors import Interrupted
from openkb.ingest.committer import GroupCommitter, StopWaiting, discard_staging
from openkb.ingest.report import AddReport, CancelToken, Counts, Tally
from openkb.ingest.window import Window
from openkb.kb import KB, WaitCallback
from openkb.lock import Holder
from openkb.model import FileFailure, PreparedDocument, PrepareTask, ScanEntry, Skipped
from openkb.prefilter import NameReservations, prefilter
from openkb.progress import Progress
from openkb.runs import RunRecord
from openkb.scan import ScanResult, scan_inputs
from openkb.statcache import StatCache

if TYPE_CHECKING:
    # Loaded by the run that has files to prepare: a re-sync of unchanged
    # files starts no worker, and should not import the converters either.
    from openkb.ingest.dispatch import Dispatcher, Preparer
    from openkb.llm.stage import LlmStage
    from openkb.llm.summarizer import Summarizer

HEARTBEAT_S = 10.0  # OPENKB_HEARTBEAT_S, read when a run starts, overrides it (tests)
# Hashing ahead (to find the costliest files) pauses after this long when a
# worker is idle and there is something to give it.
LOOKAHEAD_SLICE_S = 0.05

Prefiltered = Iterator[tuple[ScanEntry, PrepareTask | Skipped | FileFailure, float]]


class AddRun:
    def __init__(self, kb: KB, progress: Progress, jobs: int, cancel: CancelToken,
                 lock_timeout: float | None, on_lock_wait: WaitCallback | None,
                 summarizer: Summarizer | None = None, *, rehash: bool = False) -> None:
        self.kb = kb
        self.rehash = rehash  # ignore the stat cache: hash every file
        self.stat_cache: StatCache | None = None
        self.layout = kb.layout
        self.config = kb.config
        self.progress = progress
        self.jobs = jobs
        self.cancel = cancel
        self.on_lock_wait = on_lock_wait
        self.tally = Tally(progress, jobs)
        self.staging_root = self.layout.staging_dir / progress.run_id
        self.record = RunRecord(progress.run_id, os.getpid(), kb.command, time.time(), time.time())
        self.prefilter_ms: dict[int, float] = {}
        self.reservations = NameReservations(self.layout, kb.registry)
        self.committer = GroupCommitter(kb, self.tally, self.reservations,
                                        lock_timeout=lock_timeout,
                                        on_lock_wait=self._on_lock_wait,
                                        prefilter_ms=self.prefilter_ms)
        self.dispatcher: Dispatcher | None = None
        self.summarizer = summarizer
        self.llm: LlmStage | None = None  # the LLM stage, when summaries are asked for
        self.lock_timeout = lock_timeout
        self.started = time.monotonic()
        self.started_ns = time.time_ns()  # before the scan: see openkb.statcache
        self.free_at_start = free_bytes(self.layout.root)  # what a full disk's message needs

    @property
    def report(self) -> AddReport:
        return self.tally.report

    @property
    def counts(self) -> Counts:
        return self.tally.counts

    # -- the run -------------------------------------------------------------
    def execute(self, inputs: list[str]) -> AddReport:
        with self.progress.run(self.kb.command, jobs=self.jobs, inputs=inputs[:20]) as outcome:
            self.record.save(self.layout)
            stop_heartbeat = threading.Event()
            heartbeat = threading.Thread(target=self._heartbeat, args=(stop_heartbeat,),
                                         name="openkb-heartbeat", daemon=True)
            heartbeat.start()
            try:
                self._scan_and_ingest(inputs)
                if self.summarizer is not None and not self.cancel.stop_requested:
                    self._retry_pending_summaries()
            except KeyboardInterrupt as exc:  # pressed twice: the commit in flight rolled back
                self.report.interrupted = True
                raise Interrupted("interrupted; the commit in flight was rolled back") from exc
            finally:
                stop_heartbeat.set()
                heartbeat.join()
                self.record.delete(self.layout)
                self.report.wall_s = time.monotonic() - self.started
                self.report.phase_ms = {k: round(v, 1)
                                        for k, v in self.progress.phase_busy_ms.items()}
                peak = self.dispatcher.preparer.peak_rss_mib if self.dispatcher else 0.0
                outcome.fields.update(self.tally.summary_fields(peak))
            outcome.cancelled = self.report.interrupted
            outcome.exit_code = self.report.exit_code
        return self.report

    def _scan(self, inputs: list[str]) -> ScanResult:
        """The files this run ingests (`openkb sync` first takes away what moved)."""
        with self.progress.span("scan", "scan"):
            return scan_inputs(
                inputs, kb_root=self.layout.root, follow_symlinks=self.config.follow_symlinks,
                on_progress=lambda n: self.progress.emit("scan", "progress", "scan",
                                                         counts={"total": n}))

    def _scan_and_ingest(self, inputs: list[str]) -> None:
        scan = self._scan(inputs)
        self.report.skipped += scan.skipped
        self.counts.total = len(scan.entries)
        self.counts.skipped = len(scan.skipped)
        self.counts.failed = len(scan.failed)
        for failure in scan.failed:
            self.tally.fail(failure, counted=False)
        self._phase("prepare")
        if not scan.entries:
            return
        workers = min(self.jobs, len(scan.entries))
        from openkb.executors import warm_up
        from openkb.ingest.dispatch import Dispatcher

        # The fork server imports the converters while this process imports
        # the commit path: on two cores, at the same time.
        warm_up(self.config, workers)
        commit.preload()
        self.dispatcher = Dispatcher(self._preparer(workers), self.progress, workers)
        if self.summarizer is not None:
            from openkb.llm.stage import LlmStage

            self.llm = LlmStage(self.summarizer, self.progress)
        out_of_space: str | None = None
        try:
            self._pipeline(scan.entries)
        except DiskFull as exc:
            out_of_space = str(exc)
            self.progress.emit("disk_full", "point", "commit", error=str(exc)[:1000],
                               counts=self.counts.as_dict())
        finally:
            if self.stat_cache is not None:
                _despite_interrupts(self.stat_cache.flush)
            if self.llm is not None:
                self.llm.close(interrupted=self.cancel.stop_requested)
                self.report.llm.update(self.llm.counters()["llm"])
                self.report.llm_stopped = self.summarizer.stopped if self.summarizer else None
            _despite_interrupts(self.dispatcher.preparer.close)
            _despite_interrupts(lambda: discard_staging(self.staging_root))
        if out_of_space is not None:
            self.report.out_of_space = self._out_of_space(scan.entries, out_of_space)

    def _out_of_space(self, entries: list[ScanEntry], cause: str) -> OutOfSpace:
        """What the disk stopped: committed so far, and what the rest needs."""
        report = self.report
        settled = {display for _, display in (*report.added, *report.updated)}
        settled.update(s.display for s in report.skipped)
        settled.update(f.display for f in report.failed)
        used = self.free_at_start - free_bytes(self.layout.root)
        return out_of_space(len(report.added) + len(report.updated), report.bytes_committed,
                            used, [e.size for e in entries if e.display not in settled], cause)

    def _preparer(self, workers: int) -> Preparer:
        on_event = self.progress.forward if self.progress.active else None
        start = time.perf_counter()
        from openkb.executors import open_executor

        executor = open_executor(self.config, workers, on_event)
        # Which executor, and what starting it cost (a Dask cluster: seconds).
        self.progress.emit("executor", "point", "prepare", executor=self.config.executor,
                           workers=workers, scheduler=getattr(executor, "scheduler", None),
                           startup_ms=round((time.perf_counter() - start) * 1000, 3))
        return executor

    def _pipeline(self, entries: list[ScanEntry]) -> None:
        # Finish a crashed commit first if nobody holds the lock: the names
        # its files still occupy on disk are free once it is rolled back.
        registry = self.kb.reader(self.progress)
        dispatcher = self.dispatcher
        assert dispatcher is not None
        if self.stat_cache is None:
            self.stat_cache = StatCache(registry, entries, rehash=self.rehash,
                                        started_ns=self.started_ns, layout=self.layout)
        tasks = prefilter(entries, self.reservations, registry, self.staging_root,
                          self.config.max_file_mb * 1048576, self.progress, self.stat_cache)
        window = Window(self.jobs + self.config.prepare_buffer,
                        self.config.prepare_buffer_mb * 1048576, self.config.commit_group_size)
        exhausted = False
        while not self.cancel.stop_requested:
            self._collect(timeout=0)
            exhausted = exhausted or self._admit(tasks, window)
            dispatcher.submit()
            if exhausted and not len(window):
                break
            ready = window.ready(self.llm.ready(dispatcher.finished) if self.llm
                                 else dispatcher.finished)
            if window.commit_due(ready, exhausted):
                self._commit_head(window, ready)
            else:
                self._collect(timeout=0.05 if ready else 0.2)
        if self.cancel.stop_requested:
            self.report.interrupted = True

    def _admit(self, tasks: Prefiltered, window: Window) -> bool:
        """Prefilter files into the window while it has room; returns True
        once every file has been prefiltered. In parallel, a worker left
        idle with work queued for it is served after a short slice."""
        dispatcher = self.dispatcher
        assert dispatcher is not None
        fill_until = time.monotonic() + LOOKAHEAD_SLICE_S
        while window.has_room() and not (
                dispatcher.waiting_for_a_worker()
                and (not dispatcher.parallel or time.monotonic() > fill_until)):
            item = next(tasks, None)
            if item is None:
                return True
            entry, outcome, hash_ms = item
            if isinstance(outcome, Skipped):
                self.tally.skip(outcome, bytes=entry.size, hash_ms=hash_ms)
            elif isinstance(outcome, FileFailure):
                self.tally.fail(outcome)
            else:
                self.prefilter_ms[entry.seq] = hash_ms
                self.progress.emit("prefilter", "point", "prefilter", file=entry.display,
                                   doc=outcome.name, bytes=entry.size, hash_ms=hash_ms,
                                   outcome="update" if outcome.replaces else "new")
                dispatcher.queue(outcome)
                window.admit(entry.seq, entry.size)
        return False

    def _commit_head(self, window: Window, ready: int) -> None:
        """Commit the ``ready`` files at the window's head as one group."""
        assert self.dispatcher is not None
        group: list[PreparedDocument] = []
        disk_full: FileFailure | None = None
        for seq in window.take(ready):
            result = self.dispatcher.finished.pop(seq).result
            if self.llm is not None:
                self.llm.take(seq)
            if disk_full is not None:
                continue  # not tried: the run stops at the full disk
            if isinstance(result, FileFailure):
                if is_disk_full_reason(result.reason):
                    disk_full = result  # staging it filled the disk: not its own failure
                else:
                    self.tally.fail(result)
            else:
                assert isinstance(result, PreparedDocument)
                group.append(result)
        if group:
            self._phase("commit")
            self.committer.commit_group(group)
        if disk_full is not None:
            raise DiskFull(full_disk_cause(disk_full.reason))

    def _collect(self, timeout: float) -> None:
        assert self.dispatcher is not None
        if self.llm is None or not self.llm.in_flight():
            self.counts.prepared += self.dispatcher.collect(timeout)
            if self.llm is not None:
                self.llm.offer(self.dispatcher.finished)
            return
        # Waiting on both the workers and the LLM calls: a short look at the
        # workers (none when they are idle), the rest of the wait on the calls.
        look = min(timeout, 0.02) if self.dispatcher.preparer.busy() else 0.0
        self.counts.prepared += self.dispatcher.collect(look)
        self.llm.offer(self.dispatcher.finished)
        self.llm.wait(timeout - look)
        self.llm.poll()

    def _on_lock_wait(self, holder: Holder | None, waited: float) -> None:
        if self.cancel.stop_requested:
            raise StopWaiting
        # Read what the workers finished meanwhile (nothing is committed
        # here): until their results are read the pool counts them as still
        # converting, and heartbeats during a long wait would say so.
        if self.dispatcher is not None:
            self._collect(timeout=0)
        if self.on_lock_wait is not None:
            self.on_lock_wait(holder, waited)

    def _retry_pending_summaries(self) -> None:
        """Documents an earlier run left without their LLM summary (this
        run's own failures have had their retries)."""
        from openkb.llm.refresh import refresh_summaries

        if self.summarizer is None or self.summarizer.stopped:
            return
        failed_now = self.llm.failed_sources if self.llm is not None else set()
        try:
            retried = refresh_summaries(self.kb, self.progress, self.summarizer,
                                        recompile=False, lock_timeout=self.lock_timeout,
                                        on_wait=self._on_lock_wait, skip=failed_now)
        except StopWaiting:
            return
        self.report.llm["retried"] = retried.answered + retried.cached
        self.report.llm["pending"] = self.report.llm.get("pending", 0) + retried.pending

    # -- progress --------------------------------------------------------------
    def _phase(self, phase: str) -> None:
        if self.record.phase != phase:
            self.record.phase = phase
            self.record.counts = self.counts.as_dict()
            self.record.save(self.layout)
            self.progress.emit("phase", "point", phase, counts=self.counts.as_dict())

    def _last_progress(self) -> float:
        last = self.committer.last_commit
        if self.dispatcher is not None:
            last = max(last, self.dispatcher.last_result)
        return max(last, self.started)

    def _heartbeat(self, stop: threading.Event) -> None:
        every = float(os.environ.get("OPENKB_HEARTBEAT_S", HEARTBEAT_S))
        while not stop.wait(every):
            busy = self.dispatcher.preparer.busy() if self.dispatcher is not None else []
            since = time.monotonic() - self._last_progress()
            self.record.last_progress = time.time() - since
            self.record.counts = self.counts.as_dict()
            self.record.save(self.layout)
            self.progress.emit(
                "heartbeat", "point", "run", counts=self.counts.as_dict(),
                since_progress_s=round(since, 1),
                workers=[{"worker": w, "file": f, "busy_s": round(s, 1)} for w, f, s in busy])


def _despite_interrupts(cleanup: Callable[[], None]) -> None:
    """Run an idempotent cleanup to the end, even if Ctrl-C lands in it (a
    second press meant "roll back the commit", and none is in flight here)."""
    while True:
        try:
            cleanup()
            return
        except KeyboardInterrupt:
            continue

