"""The ``thread`` executor: prepare on a ``ThreadPoolExecutor`` in this process.

Right for I/O-bound preparation (an LLM or embedding call, a network file
system) and for free-threaded CPython; for CPU-bound conversion on a
GIL build the ``process`` executor is faster (the GIL lets one thread
convert at a time, and PDFium is serialised by a lock besides).

Limits: the per-file timeout fails the file at its deadline. A thread
cannot be killed, so the deadline also raises :class:`~openkb.executors.
deadline.Timeout` inside the thread (it stops at its next Python
instruction) and the pool is replaced by a fresh one for the files queued
behind it, so ``jobs`` threads keep converting; the old thread finishes on
its own, its result is dropped, and its staging dir goes with the run's. A
thread stuck inside a C call holds the process's exit until that call
returns. ``worker_memory_mb`` is not enforced: capping this process would
cap the commit too.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from openkb.executors.deadline import Timeout, thread_deadline
from openkb.executors.futures import FutureExecutor, Slot
from openkb.model import FileFailure, PrepareTask
from openkb.prepare.pool import PREFETCH, EventSink, Finished
from openkb.prepare.stage import PrepareLimits, run_task
from openkb.prepare.worker import describe_failure, prepare_event, timeout_reason
from openkb.progress import rss_mib


class ThreadExecutor(FutureExecutor):
    name = "thread"

    def __init__(self, jobs: int, limits: PrepareLimits, *, timeout_s: float,
                 on_event: EventSink | None) -> None:
        super().__init__(jobs * (1 + PREFETCH), timeout_s, on_event)
        self._jobs = jobs
        self._limits = limits
        self._pool = self._new_pool()
        self._futures: dict[int, Future[Finished]] = {}
        self._tasks: dict[int, PrepareTask] = {}
        self._thread_index: dict[int, int] = {}
        self._index_lock = threading.Lock()

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self._jobs, thread_name_prefix="openkb-prepare")

    def _launch(self, token: int, task: PrepareTask) -> None:
        future = self._pool.submit(self._work, token, task)
        self._futures[token] = future
        self._tasks[token] = task
        future.add_done_callback(lambda f: self._done.put((token, f)))

    def _current(self, token: int, payload: Any) -> bool:
        return self._futures.get(token) is payload

    def _finish(self, token: int, slot: Slot, payload: Any) -> Finished:
        del self._futures[token], self._tasks[token]
        self.peak_rss_mib = max(self.peak_rss_mib, rss_mib())
        return payload.result()  # _work catches everything a file can raise

    def _abandon(self, token: int, slot: Slot) -> None:
        self._futures.pop(token, None)
        self._tasks.pop(token, None)
        # Its thread is lost to the pool until it returns: move the files
        # queued behind it (cancel() succeeds only for those not started) to
        # a fresh pool; the old one's threads exit once their file is done.
        queued = [t for t, f in self._futures.items() if f.cancel()]
        self._pool.shutdown(wait=False)
        self._pool = self._new_pool()
        for queued_token in queued:
            self._launch(queued_token, self._tasks[queued_token])

    def _work(self, token: int, task: PrepareTask) -> Finished:
        """Runs on a pool thread."""
        where = self._index()
        self._report_start(token, where)
        self._event(task, "start", where, bytes=task.size)
        start = time.perf_counter()
        outcome = "ok"
        try:
            with thread_deadline(self._timeout_s):
                result: Any = run_task(task, self._limits)
        except Timeout:
            result = FileFailure(task.seq, task.display, timeout_reason(self._timeout_s))
            outcome = "error"
        except BaseException as exc:  # one file's failure, whatever it is, is reported
            result = FileFailure(task.seq, task.display, describe_failure(exc, None))
            outcome = "error"
        dur_ms = round((time.perf_counter() - start) * 1000, 3)
        self._event(task, "done", where, dur_ms=dur_ms, outcome=outcome, bytes=task.size)
        return Finished(result, dur_ms)

    def _index(self) -> int:
        """A small number for this thread, for the progress stream."""
        with self._index_lock:
            return self._thread_index.setdefault(threading.get_ident(),
                                                 len(self._thread_index))

    def _event(self, task: PrepareTask, kind: str, where: int, **fields: Any) -> None:
        self._emit(prepare_event(task, kind, pid=os.getpid(), worker=where, rss=rss_mib(),
                                 mono=time.monotonic(), **fields))

    def close(self) -> None:
        for future in self._futures.values():
            future.cancel()
        # Do not wait for a thread still converting (a timed-out one): its
        # result is not wanted, and it stops at its deadline.
        self._pool.shutdown(wait=False, cancel_futures=True)
