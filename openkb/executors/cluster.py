"""The ``dask`` executor: prepare on a Dask distributed cluster.

Without an address it starts a ``LocalCluster`` on loopback with one
single-threaded worker process per job; with one it connects to a running
scheduler (``dask scheduler`` and ``dask worker`` on other machines). The
commit stays here, single-writer: a task returns the prepared document as
bytes and this process stages it (:mod:`openkb.executors.remote`).

Limits: the per-file timeout cancels the future and fails the file (the
task's own deadline frees the worker's thread); memory is the nanny's
``memory_limit`` (``worker_memory_mb`` plus a baseline for the worker
itself); a task whose workers keep dying ends as ``KilledWorker`` and fails
only its file. A worker lost mid-run: the scheduler runs its tasks
elsewhere. The scheduler lost: :class:`~openkb.errors.ExecutorFailed`, the
run stops, its commits are kept.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from openkb.errors import ExecutorFailed, FileRejected, UsageError
from openkb.executors.futures import FutureExecutor, Slot
from openkb.executors.remote import TOPIC, prepare_remote
from openkb.model import FileFailure, PreparedDocument, PrepareTask
from openkb.prepare.pool import PREFETCH, EventSink, Finished
from openkb.prepare.stage import Built, PrepareLimits, read_input, stage_built
from openkb.prepare.worker import describe_failure, prepare_event

CONNECT_TIMEOUT_S = 20
# What a Dask worker process takes before its first file: its memory_limit
# is this plus worker_memory_mb.
WORKER_BASELINE_MB = 512
# Tasks out per worker thread, as the process pool's PREFETCH: every result
# is a round trip through the scheduler, and a worker must not idle through
# it. The scheduler holds the surplus back (worker-saturation), so a worker
# that dies takes only its few with it.
TASKS_PER_THREAD = 1 + PREFETCH
STAGING_THREADS = 2


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError("the dask executor needs Dask distributed, which is not installed",
                         hint="pip install 'openkb[dask]'", argument="executor") from None
    return distributed


class DaskExecutor(FutureExecutor):
    name = "dask"

    def __init__(self, jobs: int, limits: PrepareLimits, *, timeout_s: float, memory_mb: int,
                 on_event: EventSink | None, scheduler: str | None, send_bytes: bool) -> None:
        distributed = _distributed()
        _quiet_logs()
        self._cluster: Any = None
        try:
            if scheduler:
                self._client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S,
                                                  set_as_default=False)
            else:
                self._cluster = distributed.LocalCluster(
                    n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                    # Its HTTP server (metrics; a dashboard if bokeh is installed) on
                    # loopback and any free port: two runs side by side must not clash.
                    dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                    memory_limit=f"{memory_mb + WORKER_BASELINE_MB}MiB")
                self._client = distributed.Client(self._cluster, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
            raise ExecutorFailed(f"cannot reach {where}: {exc}",
                                 hint="start the scheduler and its workers, or check the "
                                      "address") from None
        self.scheduler = scheduler or self._cluster.scheduler_address
        threads = sum(self._client.nthreads().values()) or jobs
        super().__init__(threads * TASKS_PER_THREAD, timeout_s, on_event)
        self._limits = limits
        self._memory_mb = memory_mb
        self._send_bytes = send_bytes
        self._run_key = uuid.uuid4().hex[:12]
        self._futures: dict[int, Any] = {}
        self._killed_worker = distributed.KilledWorker
        self._numbers: dict[str, int] = {}
        self._numbers_lock = threading.Lock()
        self._stager = ThreadPoolExecutor(STAGING_THREADS, thread_name_prefix="openkb-stage")
        self._client.subscribe_topic(TOPIC, self._on_start)

    def _launch(self, token: int, task: PrepareTask) -> None:
        data = None
        if self._send_bytes:
            try:
                data = read_input(task, self._limits)
            except (FileRejected, OSError) as exc:
                failure = FileFailure(task.seq, task.display, describe_failure(exc, None))
                self._done.put((token, Finished(failure, 0.0)))
                return
        key = f"openkb-prepare-{self._run_key}-{token}-{self._slots[token].launches}"
        try:
            future = self._client.submit(prepare_remote, token, task, self._limits, data,
                                         self._timeout_s, self._memory_mb, key=key, pure=False)
        except OSError as exc:  # the connection to the scheduler is gone
            raise self._lost() from exc
        self._futures[token] = future
        self._when_done(token, future)

    def _when_done(self, token: int, future: Any) -> None:
        def done(f: Any) -> None:  # on Dask's callback thread
            outcome = _outcome(f)
            if outcome is None:  # its result died with a worker: computed again, wait again
                self._when_done(token, f)
            else:
                self._done.put((token, outcome))

        future.add_done_callback(done)

    def _on_start(self, event: tuple[float, dict[str, Any]]) -> None:
        """On the client's thread: a worker began a task."""
        message = event[1]
        token = message["token"]
        self._report_start(token, message["address"])
        slot = self._slots.get(token)
        if slot is not None:
            self._emit(prepare_event(slot.task, "start", pid=message["pid"],
                                     worker=self._number(message["address"]), rss=0.0,
                                     bytes=slot.task.size, address=message["address"]))

    def collect(self, timeout: float) -> list[Finished]:
        if self._slots and self._client.status not in ("running", "newly-created"):
            raise self._lost()
        try:
            return super().collect(timeout)
        except OSError as exc:  # the connection to the scheduler is gone
            raise self._lost() from exc

    def _finish(self, token: int, slot: Slot, payload: Any) -> Finished | None:
        if isinstance(payload, Finished):
            return payload
        self._futures.pop(token, None)
        task = slot.task
        status, value = payload
        if status == "finished":
            result, dur_ms, outcome, peak, address = pickle.loads(value)
            self.peak_rss_mib = max(self.peak_rss_mib, peak)
            if isinstance(result, Built):
                # Staging fsyncs four times: on threads, beside the commits
                # (as process workers stage beside them), not in their way.
                slot.started = None  # converted: no deadline while it is staged
                self._stager.submit(self._stage, token, task, result, dur_ms, address)
                return None
            self._emit(prepare_event(task, "done", pid=None, worker=self._number(address),
                                     rss=0.0, dur_ms=dur_ms, outcome=outcome,
                                     bytes=task.size, address=address))
            return Finished(result, dur_ms)
        if status == "error" and isinstance(value, self._killed_worker) \
                and self._bystander(slot):
            slot.launches += 1
            slot.started = None
            self._launch(token, task)
            return None
        if status == "error" and isinstance(value, self._killed_worker):
            reason = ("the Dask workers converting it died each time (killed, or over "
                      f"their memory limit: worker_memory_mb = {self._memory_mb})")
            return Finished(FileFailure(task.seq, task.display, reason), 0.0)
        if status == "error":
            reason = describe_failure(value, self._memory_mb)
            return Finished(FileFailure(task.seq, task.display, reason), 0.0)
        # Cancelled, and not by us, or its result gone: the scheduler is lost.
        raise self._lost()

    def _stage(self, token: int, task: PrepareTask, built: Built, dur_ms: float,
               address: str) -> None:
        """On a staging thread: write the returned document's staging dir."""
        outcome = "ok"
        try:
            result: PreparedDocument | FileFailure = stage_built(task, built)
        except OSError as exc:
            result, outcome = FileFailure(task.seq, task.display,
                                          describe_failure(exc, None)), "error"
        self._emit(prepare_event(task, "done", pid=None, worker=self._number(address),
                                 rss=0.0, dur_ms=dur_ms, outcome=outcome, bytes=task.size,
                                 address=address))
        self._done.put((token, Finished(result, dur_ms)))

    def _number(self, address: str) -> int:
        """A small number per Dask worker, as process workers have: the live
        view and the Chrome trace keep one lane per worker (the events also
        carry its address)."""
        with self._numbers_lock:
            return self._numbers.setdefault(address, len(self._numbers))

    @staticmethod
    def _bystander(slot: Slot) -> bool:
        """Did the task end as KilledWorker for others' deaths? The
        scheduler counts a death against every task queued on the worker,
        not only the one running; the task that kills its workers has run
        on several of them."""
        return slot.starts < 2 and slot.launches < 3

    def _lost(self) -> ExecutorFailed:
        return ExecutorFailed(
            f"lost the Dask scheduler at {self.scheduler}; the files committed so far are kept",
            hint="start the scheduler again (or check the network) and run the same add: "
                 "it goes on with the files not yet committed")

    def _abandon(self, token: int, slot: Slot) -> None:
        future = self._futures.pop(token, None)
        if future is not None:
            with contextlib.suppress(Exception):
                future.cancel()

    def close(self) -> None:
        # Wait for the staging writes: the run removes its staging dirs next.
        self._stager.shutdown(wait=True, cancel_futures=True)
        futures = list(self._futures.values())
        self._futures.clear()
        with contextlib.suppress(Exception):
            if futures and self._client.status == "running":
                self._client.cancel(futures)
        with contextlib.suppress(Exception):
            self._client.close(timeout=5)
        self._close_cluster()

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=10)



def _outcome(future: Any) -> tuple[str, Any] | None:
    """On Dask's callback thread: what a finished future holds. Fetched
    there, not by collect(): each fetch is a round trip through the
    client's event loop (~10 ms on a busy machine), and the main thread
    has commits to run.

    None when the result is gone with the worker that held it (a task
    done, its worker killed before we fetched it): the scheduler is fine and
    computes it again, so the future is waited for again."""
    try:
        if future.status == "finished":
            return "finished", future.result()
        if future.status == "error":
            return "error", future.exception()
    except Exception as exc:
        # result() waits through a recompute; the task may end in error there.
        if future.status == "error":
            return "error", exc
        if future.status in ("lost", "pending"):
            return None
        return "lost", exc  # released meanwhile: the scheduler went away
    if future.status in ("lost", "pending"):
        return None
    return future.status, None


def _quiet_logs() -> None:
    """Dask logs each reconnect attempt and worker death, with tracebacks,
    on the user's terminal; the run reports what matters once, itself."""
    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL)
