"""Running prepare: in worker processes, or in this process for ``--jobs 1``.

Both preparers offer the same three calls: ``submit(task)`` when
``free_slots()`` allows, ``collect(timeout)`` for finished results, and
``close()``. The pool is not a ``ProcessPoolExecutor``: that one breaks as a
whole when one worker dies, and cannot kill a worker stuck on one file. Here
each worker has its own pipe, the parent knows which task each one runs and
since when, and a worker that dies (segfault, OOM kill, SIGKILL) or passes
``convert_timeout_s`` fails only its own file and is replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import psutil

from openkb.model import FileFailure, PageTexts, PreparedDocument, PrepareTask
from openkb.prepare.stage import PrepareLimits, run_task
from openkb.prepare.worker import describe_failure, prepare_event, timeout_reason, worker_main
from openkb.progress import rss_mib

Result = PreparedDocument | FileFailure | PageTexts
EventSink = Callable[[dict[str, Any]], None]


@dataclass
class Finished:
    result: Result
    dur_ms: float


# Tasks queued per worker beyond the one it runs, so it goes on with the next
# files while this process is busy committing a group (~0.1 s, several small
# files' worth).
PREFETCH = 8


class _Worker:
    def __init__(self, index: int, process: multiprocessing.Process, conn: Connection) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.tasks: deque[PrepareTask] = deque()  # tasks[0] is the one running
        self.started = 0.0  # when tasks[0] started, for the timeout


def start_server() -> multiprocessing.context.BaseContext:
    """Start the fork server, without waiting for it: it imports openkb and
    the converters (stage loads them on first use) once, before any worker
    caps its memory, while this process goes on with its own work. The
    first worker started waits for what is left of those imports."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["openkb.prepare.worker", "openkb.prepare.convert_pdf",
                                "openkb.prepare.convert_markdown"])
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


class WorkerPool:
    def __init__(self, jobs: int, limits: PrepareLimits, *, timeout_s: float, memory_mb: int,
                 on_event: EventSink | None) -> None:
        # forkserver: workers fork from a clean server process with openkb
        # already imported, not from this process and its threads.
        self._ctx = start_server()
        self._limits = limits
        self._timeout_s = timeout_s
        self._memory_mb = memory_mb
        self._on_event = on_event
        self.peak_rss_mib = 0.0  # the largest peak RSS a worker reported
        self._workers = [self._spawn(i) for i in range(jobs)]

    def _spawn(self, index: int) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            args=(child, index, self._limits, self._memory_mb, self._on_event is not None),
            name=f"openkb-prepare-{index}",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(index, process, parent)

    def free_slots(self) -> int:
        return sum(1 + PREFETCH - len(w.tasks) for w in self._workers)

    def busy(self) -> list[tuple[int, str, float]]:
        """(worker, file, seconds on it) for each busy worker: for heartbeats."""
        now = time.monotonic()
        return [(w.index, w.tasks[0].display, now - w.started) for w in self._workers if w.tasks]

    def submit(self, task: PrepareTask) -> None:
        worker = min((w for w in self._workers if len(w.tasks) <= PREFETCH),
                     key=lambda w: len(w.tasks))
        if not worker.tasks and not worker.process.is_alive():
            # It exited after its last file (a MemoryError): start afresh.
            worker = self._respawn(worker)
        if not worker.tasks:
            worker.started = time.monotonic()
        worker.tasks.append(task)
        # If the send fails the worker has died; collect() sees its sentinel
        # and fails the task it was running.
        with contextlib.suppress(OSError):
            worker.conn.send(("task", task))

    def collect(self, timeout: float) -> list[Finished]:
        busy = [w for w in self._workers if w.tasks]
        if not busy:
            return []
        now = time.monotonic()
        nearest = min(w.started + self._timeout_s for w in busy)
        wait_s = max(0.0, min(timeout, nearest - now))
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], wait_s))
        finished: list[Finished] = []
        for worker in busy:
            if worker.conn in ready or worker.process.sentinel in ready:
                self._drain(worker, finished)
            elif time.monotonic() - worker.started > self._timeout_s:
                # Read what it sent since the wait first: its result may have
                # just come, and its start event must precede the done event
                # that failing it sends.
                self._drain(worker, finished)
                if (self._workers[worker.index] is worker and worker.tasks
                        and time.monotonic() - worker.started > self._timeout_s):
                    self._fail_running(worker, finished, timeout_reason(self._timeout_s))
        return finished

    def _drain(self, worker: _Worker, finished: list[Finished]) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "event":
                    if self._on_event is not None:
                        self._on_event(message[1])
                elif message[0] == "result":
                    finished.append(Finished(message[2], message[3]))
                    self.peak_rss_mib = max(self.peak_rss_mib, message[5])
                    worker.tasks.popleft()
                    worker.started = time.monotonic()
                    if message[4]:  # the worker quits after a MemoryError
                        self._restart(worker)
                        return
        except (EOFError, OSError):
            pass
        if not worker.process.is_alive():
            worker.process.join()
            code = worker.process.exitcode
            if worker.tasks:
                how = (f"killed by signal {signal.Signals(-code).name}" if code and code < 0
                       else f"exited with code {code}")
                self._fail_running(worker, finished,
                                   f"worker process died ({how}) while converting")
            else:
                self._respawn(worker)

    def _fail_running(self, worker: _Worker, finished: list[Finished], reason: str) -> None:
        """Fail the file the worker is on, replace the worker, and hand the
        files queued behind it (never started) to the new one."""
        task = worker.tasks.popleft()
        dur_ms = round((time.monotonic() - worker.started) * 1000, 3)
        if self._on_event is not None:
            # The worker cannot close the span it opened for this file: it is
            # stuck or dead. Close it for it, or the file vanishes from the
            # run's timings while being the slowest in it.
            self._on_event(prepare_event(task, "done", pid=worker.process.pid,
                                         worker=worker.index, rss=_rss_of(worker.process),
                                         dur_ms=dur_ms, outcome="error", bytes=task.size,
                                         error=reason))
        finished.append(Finished(FileFailure(task.seq, task.display, reason), dur_ms))
        self._restart(worker)

    def _restart(self, worker: _Worker) -> None:
        """Replace the worker; the tasks queued to it were never started, so
        they go to the new one."""
        queued = list(worker.tasks)
        fresh = self._respawn(worker)
        for queued_task in queued:
            if not fresh.tasks:
                fresh.started = time.monotonic()
            fresh.tasks.append(queued_task)
            with contextlib.suppress(OSError):
                fresh.conn.send(("task", queued_task))

    def _respawn(self, worker: _Worker) -> _Worker:
        with contextlib.suppress(ProcessLookupError):
            if worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join()
        worker.conn.close()
        fresh = self._spawn(worker.index)
        self._workers[worker.index] = fresh
        return fresh

    def close(self) -> None:
        for worker in self._workers:
            if not worker.tasks:
                with contextlib.suppress(OSError):
                    worker.conn.send(("stop",))
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGKILL)
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


class InProcessPreparer:
    """``--jobs 1``: the same stages, run here, one file at a time.

    The per-file timeout is enforced with SIGALRM (the converters are pure
    Python, so the alarm interrupts them); the memory limit is not, because
    capping this process would cap the commit path too.
    """

    peak_rss_mib = 0.0  # no workers: the main process's own RSS is the figure

    def __init__(self, limits: PrepareLimits, *, timeout_s: float,
                 on_event: EventSink | None) -> None:
        self._limits = limits
        self._timeout_s = timeout_s
        self._on_event = on_event
        self._done: list[Finished] = []
        self._current: PrepareTask | None = None
        self._started = 0.0

    def free_slots(self) -> int:
        return 1

    def busy(self) -> list[tuple[int, str, float]]:
        if self._current is None:
            return []
        return [(0, self._current.display, time.monotonic() - self._started)]

    def submit(self, task: PrepareTask) -> None:
        self._current, self._started = task, time.monotonic()
        self._event(task, "start", bytes=task.size)
        start = time.perf_counter()
        outcome = "ok"
        try:
            with _alarm(self._timeout_s):
                result: Result = run_task(task, self._limits)
        except _Timeout:
            result = FileFailure(task.seq, task.display, timeout_reason(self._timeout_s))
            outcome = "error"
        except Exception as exc:
            result = FileFailure(task.seq, task.display, describe_failure(exc, None))
            outcome = "error"
        finally:
            self._current = None
        dur_ms = round((time.perf_counter() - start) * 1000, 3)
        self._event(task, "done", dur_ms=dur_ms, outcome=outcome, bytes=task.size)
        self._done.append(Finished(result, dur_ms))

    def _event(self, task: PrepareTask, kind: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(prepare_event(task, kind, pid=os.getpid(), worker=0,
                                         rss=rss_mib(), **fields))

    def collect(self, timeout: float) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


def _rss_of(process: multiprocessing.Process) -> float:
    """A worker's RSS in MiB, or 0 once it has died (its pid may be reused)."""
    if not process.is_alive():
        return 0.0
    try:
        return round(psutil.Process(process.pid).memory_info().rss / 1048576, 1)
    except (psutil.Error, ValueError):
        return 0.0


class _Timeout(BaseException):
    """Raised by SIGALRM inside a converter. Not an Exception: the PDF
    converter catches Exception around pypdf calls, which would turn a
    timeout into "malformed" and let the conversion go on."""


@contextlib.contextmanager
def _alarm(seconds: float):
    def fire(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, fire)
    # Fires again every 0.1 s after the deadline: a signal handler's
    # exception raised inside a __del__ or a weakref callback (the garbage
    # collector runs them at any point) is printed and dropped, and a
    # one-shot alarm would then never end the conversion.
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
