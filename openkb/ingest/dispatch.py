"""Handing prepare tasks to the preparer, and collecting what comes back.

Files go to workers in scan order, except that a costly one jumps ahead
(:meth:`Dispatcher.rank`): a 100-page PDF started early finishes while the
small files around it are converted, not at the end. A long PDF is read in
parts by several workers and assembled (:mod:`openkb.prepare.parts`).
Results wait in :attr:`Dispatcher.finished`, by scan position, until the
window commits them in order.
"""

from __future__ import annotations

import heapq
import time

from openkb.executors import Executor
from openkb.model import PrepareTask
from openkb.prepare.parts import Assembly, should_split, split
from openkb.prepare.pool import Finished
from openkb.progress import Progress

Preparer = Executor  # the dispatcher runs on any of them


class Dispatcher:
    def __init__(self, preparer: Preparer, progress: Progress, workers: int) -> None:
        self.preparer = preparer
        self.progress = progress
        self.workers = workers
        self.parallel = workers > 1
        # Prepared (or failed) files not yet committed, by scan position.
        self.finished: dict[int, Finished] = {}
        # Tasks not yet given to a worker, by (rank, scan position, part).
        self._unsubmitted: list[tuple[float, int, int, PrepareTask]] = []
        self._assemblies: dict[int, Assembly] = {}  # long PDFs read in parts, by seq
        self._cost_seen = 0
        self.last_result = time.monotonic()

    def queue(self, task: PrepareTask) -> None:
        rank = self.rank(task)
        if should_split(task, self.workers):
            self._assemblies[task.seq] = Assembly(task, self.workers)
            for order, part in enumerate(split(task, self.workers)):
                heapq.heappush(self._unsubmitted, (rank, task.seq, order, part))
        else:
            heapq.heappush(self._unsubmitted, (rank, task.seq, 0, task))

    def rank(self, task: PrepareTask) -> float:
        """Scan position, less as many positions as the file costs average
        files: the commit order wants the head first, the wall clock wants
        the long conversions started early."""
        if not self.parallel:
            return task.seq
        cost = _estimated_cost(task)
        self._cost_seen += cost
        if not self._cost_seen:  # only empty files so far: none costs more than another
            return task.seq
        average = self._cost_seen / (task.seq + 1)
        return task.seq - cost / average

    def waiting_for_a_worker(self) -> bool:
        """Is a queued task waiting while a worker could take it?"""
        return bool(self._unsubmitted) and self.preparer.free_slots() > 0

    def submit(self) -> None:
        while self.waiting_for_a_worker():
            self.preparer.submit(heapq.heappop(self._unsubmitted)[-1])

    def collect(self, timeout: float) -> int:
        """Read finished work into :attr:`finished`; returns how many files
        finished (a long PDF counts once, when it is whole or has failed)."""
        files = 0
        for done in self.preparer.collect(timeout=timeout):
            self.progress.add_busy("prepare", done.dur_ms)
            self.last_result = time.monotonic()
            seq = done.result.seq
            assembly = self._assemblies.get(seq)
            if assembly is None:
                self.finished[seq] = done
                files += 1
                continue
            had_failed = assembly.failure is not None
            assembly.add(done.result, done.dur_ms)
            if assembly.complete:
                del self._assemblies[seq]
            if assembly.failure is not None and not had_failed:
                # Done with this file; the parts still out are absorbed.
                self.finished[seq] = Finished(assembly.failure, assembly.busy_ms)
                files += 1
            elif assembly.failure is None and assembly.complete:
                # Ahead of everything: the commits are waiting for it.
                heapq.heappush(self._unsubmitted, (float("-inf"), seq, 0, assembly.whole()))
        return files


def _estimated_cost(task: PrepareTask) -> int:
    """Bytes, weighted by how slow the converter is per byte (PDF text
    extraction is several times slower than parsing Markdown)."""
    return task.size * (4 if task.kind == "pdf" else 1)
