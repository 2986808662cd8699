"""`openkb add`: scan, prefilter, prepare in parallel, commit in scan order.

The pipeline keeps at most ``jobs + prepare_buffer`` files submitted but not
committed (back-pressure: memory stays flat however many files there are).
Commits happen on this process, under the lock, in scan order, as soon as
the next file in order is prepared, while workers go on with later files.
Consecutive prepared documents commit as one group (one SQLite COMMIT, one
rewrite of index.md) up to ``commit_group_size``; a group that fails is
rolled back and its members retried one by one, so one bad document never
takes others down with it.

Ctrl-C once (``cancel.stop_requested``): the commit in flight finishes, the
rest is discarded, the run reports itself interrupted. Twice: the handler
raises KeyboardInterrupt, the commit in flight rolls back.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openkb import fsio
from openkb.commit import ChangeSet, Removal, commit_changes
from openkb.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    CommitFailed,
    Interrupted,
)
from openkb.kb import KB, WaitCallback
from openkb.lock import Holder
from openkb.model import FileFailure, PreparedDocument, PrepareTask, Skipped
from openkb.prefilter import NameReservations, prefilter
from openkb.prepare.parts import Assembly, should_split, split
from openkb.prepare.pool import Finished, InProcessPreparer, WorkerPool
from openkb.prepare.stage import PrepareLimits, rename_prepared
from openkb.progress import Progress
from openkb.runs import RunRecord
from openkb.scan import scan_inputs

log = logging.getLogger("openkb.timing")

# Tests shorten the heartbeat through the environment.
HEARTBEAT_S = float(os.environ.get("OPENKB_HEARTBEAT_S", "10"))
# A prepared document waits at most this long for its commit group to fill.
MAX_GROUP_WAIT_S = 0.5
# Hashing ahead (to find the costliest files) pauses after this long when a
# worker is idle and there is something to give it.
LOOKAHEAD_SLICE_S = 0.05


class _StopWaiting(Exception):
    """Raised out of a lock wait when the user asked the run to stop."""


class CancelToken:
    """Set by the CLI's SIGINT handler; read between commits."""

    def __init__(self) -> None:
        self.stop_requested = False


@dataclass
class Counts:
    total: int = 0
    prepared: int = 0
    committed: int = 0
    skipped: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class AddReport:
    added: list[tuple[str, str]] = field(default_factory=list)  # (name, display)
    updated: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)
    interrupted: bool = False
    bytes_committed: int = 0
    phase_ms: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    jobs: int = 1

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def add_paths(kb: KB, inputs: list[str], progress: Progress, *, jobs: int | None = None,
              cancel: CancelToken | None = None, lock_timeout: float | None = None,
              on_lock_wait: WaitCallback | None = None) -> AddReport:
    run = _AddRun(kb, progress, jobs or kb.config.jobs, cancel or CancelToken(), lock_timeout,
                  on_lock_wait)
    return run.execute(inputs)


class _AddRun:
    def __init__(self, kb: KB, progress: Progress, jobs: int, cancel: CancelToken,
                 lock_timeout: float | None, on_lock_wait: WaitCallback | None) -> None:
        self.kb = kb
        self.layout = kb.layout
        self.config = kb.config
        self.progress = progress
        self.jobs = jobs
        self.cancel = cancel
        self.lock_timeout = lock_timeout
        self.on_lock_wait = on_lock_wait
        self.report = AddReport(jobs=jobs)
        self.counts = Counts()
        self.staging_root = self.layout.staging_dir / progress.run_id
        self.record = RunRecord(progress.run_id, os.getpid(), kb.command, time.time(), time.time())
        self.preparer: WorkerPool | InProcessPreparer | None = None
        self.prefilter_ms: dict[int, float] = {}
        self.last_progress = time.monotonic()
        self.reservations = NameReservations(self.layout, kb.registry)
        self.in_parallel = False
        self.workers = 1
        self.cost_seen = 0
        # Prepared (or failed) files not yet committed, by scan position. An
        # attribute, not a local of the pipeline, because a lock wait reads
        # the workers' results into it too.
        self.finished: dict[int, Finished] = {}
        # Tasks not yet given to a worker, by (rank, scan position, part);
        # an attribute for the same reason: a long PDF's last part, read
        # during a lock wait, queues the task that assembles it.
        self.unsubmitted: list[tuple[float, int, int, PrepareTask]] = []
        self.assemblies: dict[int, Assembly] = {}  # long PDFs read in parts, by seq

    # -- the run -------------------------------------------------------------
    def execute(self, inputs: list[str]) -> AddReport:
        start = time.monotonic()
        with self.progress.run(self.kb.command, jobs=self.jobs, inputs=inputs[:20]) as outcome:
            self.record.save(self.layout)
            stop_heartbeat = threading.Event()
            heartbeat = threading.Thread(target=self._heartbeat, args=(stop_heartbeat,),
                                         name="openkb-heartbeat", daemon=True)
            heartbeat.start()
            try:
                self._scan_and_ingest(inputs)
            except KeyboardInterrupt as exc:  # pressed twice: the commit in flight rolled back
                self.report.interrupted = True
                raise Interrupted("interrupted; the commit in flight was rolled back") from exc
            finally:
                stop_heartbeat.set()
                heartbeat.join()
                self.record.delete(self.layout)
                self.report.wall_s = time.monotonic() - start
                self.report.phase_ms = {k: round(v, 1)
                                        for k, v in self.progress.phase_busy_ms.items()}
                outcome.fields.update(self._summary_fields())
            outcome.cancelled = self.report.interrupted
            outcome.exit_code = self.report.exit_code
        return self.report

    def _scan_and_ingest(self, inputs: list[str]) -> None:
        with self.progress.span("scan", "scan"):
            scan = scan_inputs(
                inputs, kb_root=self.layout.root, follow_symlinks=self.config.follow_symlinks,
                on_progress=lambda n: self.progress.emit("scan", "progress", "scan",
                                                         counts={"total": n}))
        self.report.skipped += scan.skipped
        self.report.failed += scan.failed
        self.counts.total = len(scan.entries)
        self.counts.skipped = len(scan.skipped)
        self.counts.failed = len(scan.failed)
        for failure in scan.failed:
            self._emit_file_error(failure)
        self._phase("prepare")
        if not scan.entries:
            return
        limits = PrepareLimits(max_file_bytes=self.config.max_file_mb * 1048576,
                               chunk_chars=self.config.chunk_chars,
                               key_terms=self.config.key_terms_per_doc)
        on_event = self.progress.forward if self.progress.active else None
        workers = self.workers = min(self.jobs, len(scan.entries))
        self.in_parallel = workers > 1
        if workers > 1:
            self.preparer = WorkerPool(workers, limits, timeout_s=self.config.convert_timeout_s,
                                       memory_mb=self.config.worker_memory_mb, on_event=on_event)
        else:
            self.preparer = InProcessPreparer(limits, timeout_s=self.config.convert_timeout_s,
                                              on_event=on_event)
        try:
            self._pipeline(scan.entries)
        finally:
            _despite_interrupts(self.preparer.close)
            _despite_interrupts(lambda: _discard_staging(self.staging_root))

    def _pipeline(self, entries) -> None:
        # Finish a crashed commit first if nobody holds the lock: the names
        # its files still occupy on disk are free once it is rolled back.
        registry = self.kb.reader(self.progress)
        preparer = self.preparer
        assert preparer is not None
        tasks = prefilter(entries, self.reservations, registry, self.staging_root,
                          self.config.max_file_mb * 1048576, self.progress)
        # Commits go in scan order, so a slow file at the head holds back
        # everything after it; a deep window keeps the other workers busy
        # meanwhile. It is bounded by count and by bytes, so memory is too.
        window = self.jobs + self.config.prepare_buffer
        window_bytes = self.config.prepare_buffer_mb * 1048576
        pending_bytes = 0
        sizes: dict[int, int] = {}
        pending: deque[int] = deque()  # prefiltered, not yet committed, in scan order
        # Files go to workers in scan order, except that a costly one jumps
        # ahead (see _dispatch_rank): a 100-page PDF started early finishes
        # while the small files around it are converted, not at the end.
        unsubmitted = self.unsubmitted
        finished = self.finished
        exhausted = False
        ready_since: float | None = None
        while not self.cancel.stop_requested:
            self._collect(preparer, finished, timeout=0)
            fill_until = time.monotonic() + LOOKAHEAD_SLICE_S
            while (not exhausted and len(pending) < window
                   and (pending_bytes < window_bytes or not pending)
                   and not (unsubmitted and preparer.free_slots()
                            and (not self.in_parallel or time.monotonic() > fill_until))):
                item = next(tasks, None)
                if item is None:
                    exhausted = True
                    break
                entry, outcome, hash_ms = item
                if isinstance(outcome, Skipped):
                    self._skip(outcome)
                elif isinstance(outcome, FileFailure):
                    self._fail(outcome)
                else:
                    self.prefilter_ms[entry.seq] = hash_ms
                    self.progress.emit("prefilter", "point", "prefilter", file=entry.display,
                                       doc=outcome.name,
                                       outcome="update" if outcome.replaces else "new")
                    rank = self._dispatch_rank(outcome)
                    if should_split(outcome, self.workers):
                        self.assemblies[entry.seq] = Assembly(outcome, self.workers)
                        for order, part in enumerate(split(outcome, self.workers)):
                            heapq.heappush(unsubmitted, (rank, entry.seq, order, part))
                    else:
                        heapq.heappush(unsubmitted, (rank, entry.seq, 0, outcome))
                    pending.append(entry.seq)
                    sizes[entry.seq] = entry.size
                    pending_bytes += entry.size
            while unsubmitted and preparer.free_slots() > 0:
                preparer.submit(heapq.heappop(unsubmitted)[-1])
            if exhausted and not pending:
                break
            ready = _ready_prefix(pending, finished, self.config.commit_group_size)
            now = time.monotonic()
            if ready and ready_since is None:
                ready_since = now
            commit_now = ready and (
                ready >= self.config.commit_group_size
                or (exhausted and ready == len(pending))  # nothing else is coming
                or len(pending) >= window or pending_bytes >= window_bytes  # window full
                or now - ready_since >= MAX_GROUP_WAIT_S)  # bound commit latency
            if not commit_now:
                self._collect(preparer, finished, timeout=0.05 if ready else 0.2)
                continue
            ready_since = None
            group: list[PreparedDocument] = []
            for _ in range(ready):
                seq = pending.popleft()
                pending_bytes -= sizes.pop(seq)
                result = finished.pop(seq).result
                if isinstance(result, FileFailure):
                    self._fail(result)
                else:
                    group.append(result)
            if group:
                self._phase("commit")
                self._commit_group(group)
        if self.cancel.stop_requested:
            self.report.interrupted = True

    def _dispatch_rank(self, task: PrepareTask) -> float:
        """Scan position, less as many positions as the file costs average
        files: the commit order wants the head first, the wall clock wants
        the long conversions started early."""
        if not self.in_parallel:
            return task.seq
        cost = _estimated_cost(task)
        self.cost_seen += cost
        if not self.cost_seen:  # only empty files so far: none costs more than another
            return task.seq
        average = self.cost_seen / (task.seq + 1)
        return task.seq - cost / average

    def _collect(self, preparer: WorkerPool | InProcessPreparer,
                 finished: dict[int, Finished], timeout: float) -> None:
        for done in preparer.collect(timeout=timeout):
            self.progress.add_busy("prepare", done.dur_ms)
            self.last_progress = time.monotonic()
            seq = done.result.seq
            assembly = self.assemblies.get(seq)
            if assembly is None:
                finished[seq] = done
                self.counts.prepared += 1
                continue
            had_failed = assembly.failure is not None
            assembly.add(done.result, done.dur_ms)
            if assembly.complete:
                del self.assemblies[seq]
            if assembly.failure is not None and not had_failed:
                # Done with this file; the parts still out are absorbed.
                finished[seq] = Finished(assembly.failure, assembly.busy_ms)
                self.counts.prepared += 1
            elif assembly.failure is None and assembly.complete:
                # Ahead of everything: the commits are waiting for it.
                heapq.heappush(self.unsubmitted, (float("-inf"), seq, 0, assembly.whole()))

    # -- committing ----------------------------------------------------------
    def _commit_group(self, group: list[PreparedDocument]) -> None:
        try:
            with self.kb.exclusive(self.progress, timeout=self.lock_timeout,
                                   on_wait=self._on_lock_wait) as waited:
                ready = [doc for doc in group if self._still_wanted(doc)]
                if ready:
                    self._commit_docs(ready, waited * 1000)
        except _StopWaiting:
            pass  # Ctrl-C while waiting for the lock: nothing was in flight

    def _on_lock_wait(self, holder: Holder | None, waited: float) -> None:
        if self.cancel.stop_requested:
            raise _StopWaiting
        # Read what the workers finished meanwhile (nothing is committed
        # here): until their results are read the pool counts them as still
        # converting, and heartbeats during a long wait would say so.
        if self.preparer is not None:
            self._collect(self.preparer, self.finished, timeout=0)
        if self.on_lock_wait is not None:
            self.on_lock_wait(holder, waited)

    def _commit_docs(self, docs: list[PreparedDocument], lock_wait_ms: float) -> None:
        changes = ChangeSet(
            op="add", added=docs,
            removed=[Removal(doc.replaces) for doc in docs if doc.replaces])
        staging = [self.layout.rel(Path(doc.staging_dir)) for doc in docs]
        try:
            outcome = commit_changes(self.layout, self.kb.registry, changes, self.progress,
                                     staging_dirs=staging)
        except CommitFailed as exc:
            if len(docs) > 1:
                for doc in docs:  # find the one that failed; commit the others
                    self._commit_docs([doc], 0.0)
                return
            self._fail(FileFailure(docs[0].seq, docs[0].display, str(exc)))
            _discard_staging(Path(docs[0].staging_dir))
            return
        for doc in docs:
            (self.report.updated if doc.replaces else self.report.added).append(
                (doc.name, doc.display))
            self.report.bytes_committed += doc.size
            self.counts.committed += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug(self._timing_line(doc, lock_wait_ms, outcome.step_ms, len(docs)))
        self.last_progress = time.monotonic()
        self.progress.emit("committed", "point", "commit", txid=outcome.txid,
                           doc=[d.name for d in docs][:20], counts=self.counts.as_dict(),
                           bytes=sum(d.size for d in docs))

    def _still_wanted(self, doc: PreparedDocument) -> bool:
        """Re-check, under the lock, what the prefilter decided without it."""
        registry = self.kb.registry
        holder = registry.name_by_sha(doc.sha256)
        if holder is not None:
            self._skip(Skipped(doc.display, "duplicate", holder))
            _discard_staging(Path(doc.staging_dir))
            return False
        if doc.replaces:
            replaced = registry.document(doc.replaces)
            if replaced is None or replaced.origin != doc.origin:
                # Removed meanwhile (perhaps its name reused for another file):
                # this is a plain add now.
                doc.replaces = None
        if not doc.replaces:
            # Name it again as the prefilter would now: another process may
            # have taken the name since, or a crashed commit that held a
            # better one on disk has been rolled back by the lock's recovery.
            wanted = self.reservations.reserve_again(doc.name, doc.display)
            if wanted != doc.name:
                rename_prepared(doc, wanted)
        return True

    def _timing_line(self, doc: PreparedDocument, lock_wait_ms: float,
                     step_ms: dict[str, float], group: int) -> str:
        parts = [f"lock_wait={lock_wait_ms:.1f}ms",
                 f"prefilter={self.prefilter_ms.pop(doc.seq, 0.0):.1f}ms",
                 f"prepare={sum(doc.timings_ms.values()):.1f}ms"]
        parts += [f"{step}={ms:.1f}ms" for step, ms in step_ms.items()]
        parts.append(f"commit={sum(step_ms.values()):.1f}ms")
        return f"{doc.name}: " + " ".join(parts) + (f" (group of {group})" if group > 1 else "")

    # -- outcomes and events -------------------------------------------------
    def _skip(self, skipped: Skipped) -> None:
        self.report.skipped.append(skipped)
        self.counts.skipped += 1
        self.progress.emit("prefilter", "point", "prefilter", file=skipped.display,
                           outcome=f"skipped:{skipped.reason}")

    def _fail(self, failure: FileFailure) -> None:
        self.report.failed.append(failure)
        self.counts.failed += 1
        self._emit_file_error(failure)

    def _emit_file_error(self, failure: FileFailure) -> None:
        self.progress.emit("file_error", "point", "prepare", file=failure.display,
                           error=failure.reason[:1000], counts=self.counts.as_dict())

    def _phase(self, phase: str) -> None:
        if self.record.phase != phase:
            self.record.phase = phase
            self.record.counts = self.counts.as_dict()
            self.record.save(self.layout)
            self.progress.emit("phase", "point", phase, counts=self.counts.as_dict())

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            busy = self.preparer.busy() if self.preparer is not None else []
            since = time.monotonic() - self.last_progress
            self.record.last_progress = time.time() - since
            self.record.counts = self.counts.as_dict()
            self.record.save(self.layout)
            self.progress.emit(
                "heartbeat", "point", "run", counts=self.counts.as_dict(),
                since_progress_s=round(since, 1),
                workers=[{"worker": w, "file": f, "busy_s": round(s, 1)} for w, f, s in busy])

    def _summary_fields(self) -> dict[str, object]:
        """What the terminal event says about an add, beyond what every run says."""
        skipped_by_reason: dict[str, int] = {}
        for skipped in self.report.skipped:
            skipped_by_reason[skipped.reason] = skipped_by_reason.get(skipped.reason, 0) + 1
        return {
            "counts": self.counts.as_dict(),
            "bytes": self.report.bytes_committed,
            "added": len(self.report.added),
            "updated": len(self.report.updated),
            "skipped_by_reason": skipped_by_reason,
            # Workers are the fork server's children, not ours: they report it.
            "max_worker_rss_mib": round(self.preparer.peak_rss_mib if self.preparer else 0.0,
                                        1),
        }




def _estimated_cost(task: PrepareTask) -> int:
    """Bytes, weighted by how slow the converter is per byte (PDF text
    extraction is several times slower than parsing Markdown)."""
    return task.size * (4 if task.kind == "pdf" else 1)


def _ready_prefix(pending: deque[int], finished: dict[int, Finished], limit: int) -> int:
    """How many documents at the head of the scan order are prepared (or failed)."""
    count = 0
    for seq in pending:
        if count == limit or seq not in finished:
            break
        count += 1
    return count


def _despite_interrupts(cleanup: Callable[[], None]) -> None:
    """Run an idempotent cleanup to the end, even if Ctrl-C lands in it (a
    second press meant "roll back the commit", and none is in flight here)."""
    while True:
        try:
            cleanup()
            return
        except KeyboardInterrupt:
            continue


def _discard_staging(path: Path) -> None:
    """Staging is scratch space: failing to delete it (a full disk, EIO) is
    no reason to fail the ingest; recovery sweeps what is left."""
    try:
        fsio.remove_tree(path, sync=False)
    except OSError as exc:
        logging.getLogger("openkb").warning("could not remove %s (%s); the next openkb "
                                            "command sweeps it", path, exc.strerror or exc)
