"""Where files are prepared: the executor interface and its three kinds.

Every executor offers the same calls to the dispatcher above it, whose
ordered, bounded, group-committing pipeline does not depend on which one
runs:

- ``free_slots()``: how many more tasks it takes now (the in-flight bound);
- ``submit(task)``: start preparing one task (a file, or one part of a long
  PDF);
- ``collect(timeout)``: the tasks finished since the last call, in any order,
  each a :class:`~openkb.prepare.pool.Finished` carrying its task's ``seq``;
  waits at most ``timeout`` seconds for the first. A task whose worker was
  lost (died, killed, timed out) comes back as a
  :class:`~openkb.model.FileFailure` of that very task: each executor knows
  which task each worker holds;
- ``busy()``: (worker, file, seconds on it) for each task running, for
  heartbeats;
- ``close()``: cancel what is still out and release the workers;
- ``peak_rss_mib``: the largest resident size a worker reached.

The kinds (config ``executor``): ``process`` (default; openkb's own
forkserver pool, :mod:`openkb.prepare.pool`, or this process for one job),
``thread`` (:mod:`openkb.executors.threads`), ``dask``
(:mod:`openkb.executors.cluster`). The KB they produce is the same, byte
for byte.
"""

from __future__ import annotations

from typing import Protocol

from openkb.config import EXECUTORS, Config
from openkb.model import PrepareTask
from openkb.prepare.pool import EventSink, Finished, InProcessPreparer, WorkerPool
from openkb.prepare.stage import PrepareLimits

__all__ = ["EXECUTORS", "Executor", "open_executor"]


class Executor(Protocol):
    peak_rss_mib: float

    def free_slots(self) -> int: ...

    def busy(self) -> list[tuple[int | str, str, float]]: ...

    def submit(self, task: PrepareTask) -> None: ...

    def collect(self, timeout: float) -> list[Finished]: ...

    def close(self) -> None: ...


def warm_up(config: Config, workers: int) -> None:
    """Start what :func:`open_executor` will need and can start in the
    background (the process pool's fork server, ~0.3 s of imports)."""
    if config.executor == "process" and workers > 1:
        from openkb.prepare.pool import start_server

        start_server()


def open_executor(config: Config, workers: int, on_event: EventSink | None) -> Executor:
    """The executor ``config.executor`` names, with ``workers`` workers."""
    limits = PrepareLimits.from_config(config)
    timeout_s = config.convert_timeout_s
    if config.executor == "thread":
        from openkb.executors.threads import ThreadExecutor

        return ThreadExecutor(workers, limits, timeout_s=timeout_s, on_event=on_event)
    if config.executor == "dask":
        from openkb.executors.cluster import DaskExecutor

        return DaskExecutor(workers, limits, timeout_s=timeout_s,
                            memory_mb=config.worker_memory_mb, on_event=on_event,
                            scheduler=config.dask_scheduler,
                            send_bytes=config.dask_inputs == "bytes")
    if workers > 1:
        return WorkerPool(workers, limits, timeout_s=timeout_s,
                          memory_mb=config.worker_memory_mb, on_event=on_event)
    return InProcessPreparer(limits, timeout_s=timeout_s, on_event=on_event)
