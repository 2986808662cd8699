"""What the thread and Dask executors share: tasks tracked by a token, run
as futures elsewhere, their results read back here in any order.

Finished futures, task starts and progress events reach this class through
thread-safe queues (futures complete on a pool thread or on Dask's client
thread); only :meth:`collect`, on the main thread, reads them, so the
window, the progress stream and the timeout bookkeeping stay single-threaded
as with the process pool.
"""

from __future__ import annotations

import contextlib
import queue
import time
from dataclasses import dataclass
from itertools import count
from typing import Any

from openkb.model import FileFailure, PrepareTask
from openkb.prepare.pool import EventSink, Finished
from openkb.prepare.worker import prepare_event, timeout_reason


@dataclass
class Slot:
    task: PrepareTask
    submitted: float
    started: float | None = None  # when a worker began it (from its start report)
    where: int | str = 0  # the thread's index, or the Dask worker's address
    starts: int = 0  # how often a worker began it (a Dask task may run again elsewhere)
    launches: int = 1


class FutureExecutor:
    """Subclasses launch a task (:meth:`_launch`), turn what its future
    returned into a :class:`Finished` (:meth:`_finish`), and give up on a task
    past its deadline (:meth:`_abandon`)."""

    name = "futures"

    def __init__(self, capacity: int, timeout_s: float, on_event: EventSink | None) -> None:
        self.peak_rss_mib = 0.0
        self._capacity = capacity
        self._timeout_s = timeout_s
        self._on_event = on_event
        self._tokens = count()
        self._slots: dict[int, Slot] = {}  # the tasks out, by token
        self._done: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._started: queue.SimpleQueue[tuple[int, int | str, float]] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    # -- the executor interface -------------------------------------------
    def free_slots(self) -> int:
        return self._capacity - len(self._slots)

    def busy(self) -> list[tuple[int | str, str, float]]:
        now = time.monotonic()
        return [(s.where, s.task.display, now - s.started)
                for s in list(self._slots.values()) if s.started is not None]

    def submit(self, task: PrepareTask) -> None:
        token = next(self._tokens)
        self._slots[token] = Slot(task, time.monotonic())
        self._launch(token, task)

    def collect(self, timeout: float) -> list[Finished]:
        wait_s = max(0.0, min(timeout, self._next_deadline() - time.monotonic()))
        arrived: list[tuple[int, Any]] = []
        if self._slots:
            with contextlib.suppress(queue.Empty):
                arrived.append(self._done.get(timeout=wait_s))
        while not self._done.empty():
            arrived.append(self._done.get_nowait())
        self._read_starts()
        finished: list[Finished] = []
        for token, payload in arrived:
            slot = self._slots.get(token)
            if slot is None or not self._current(token, payload):
                continue  # timed out already, or a future replaced by a relaunch
            done = self._finish(token, slot, payload)
            if done is not None:
                del self._slots[token]
                finished.append(done)
        finished.extend(self._expire())
        self._forward_events()
        return finished

    def close(self) -> None:
        """Cancel what is still out and release the workers."""

    # -- for subclasses ------------------------------------------------------
    def _launch(self, token: int, task: PrepareTask) -> None:
        raise NotImplementedError

    def _current(self, token: int, payload: Any) -> bool:
        """Is ``payload`` the live future of ``token`` (not a replaced one)?"""
        return True

    def _finish(self, token: int, slot: Slot, payload: Any) -> Finished | None:
        """None: the task was launched again, and is still out."""
        raise NotImplementedError

    def _abandon(self, token: int, slot: Slot) -> None:
        raise NotImplementedError

    def _report_start(self, token: int, where: int | str) -> None:
        """Called on any thread when a worker begins a task."""
        self._started.put((token, where, time.monotonic()))

    def _emit(self, event: dict[str, Any]) -> None:
        """Called on any thread: forwarded from the main one by collect()."""
        if self._on_event is not None:
            self._events.put(event)

    # -- internals ------------------------------------------------------------
    def _read_starts(self) -> None:
        while not self._started.empty():
            token, where, when = self._started.get_nowait()
            slot = self._slots.get(token)
            if slot is not None:
                slot.starts += 1
                slot.started, slot.where = when, where

    def _next_deadline(self) -> float:
        started = [s.started for s in self._slots.values() if s.started is not None]
        return min(started) + self._timeout_s if started else float("inf")

    def _expire(self) -> list[Finished]:
        now = time.monotonic()
        failed: list[Finished] = []
        for token, slot in list(self._slots.items()):
            if slot.started is None or now - slot.started <= self._timeout_s:
                continue
            del self._slots[token]
            self._abandon(token, slot)
            reason = timeout_reason(self._timeout_s)
            dur_ms = round((now - slot.started) * 1000, 3)
            # The worker cannot close the span it opened: close it for it.
            self._emit(prepare_event(slot.task, "done", pid=None, worker=_index(slot.where),
                                     rss=0.0, dur_ms=dur_ms, outcome="error",
                                     bytes=slot.task.size, error=reason,
                                     **_address(slot.where)))
            failed.append(Finished(FileFailure(slot.task.seq, slot.task.display, reason),
                                   dur_ms))
        return failed

    def _forward_events(self) -> None:
        while not self._events.empty():
            event = self._events.get_nowait()
            if self._on_event is not None:
                self._on_event(event)


def _index(where: int | str) -> int:
    return where if isinstance(where, int) else 0


def _address(where: int | str) -> dict[str, str]:
    return {"address": where} if isinstance(where, str) else {}
