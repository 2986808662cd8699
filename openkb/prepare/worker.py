"""The body of a prepare worker process.

A worker takes tasks one at a time from its pipe, runs
:func:`openkb.prepare.stage.run_task`, and answers with the prepared
document or a failure. It ignores SIGINT (the parent decides what Ctrl-C
means), caps its own address space so a decompression bomb ends in a
MemoryError here rather than in the OOM killer, and never touches the lock
or any live KB path.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

import psutil

from openkb.errors import FileRejected
from openkb.model import FileFailure, PrepareTask
from openkb.prepare.stage import PrepareLimits, run_task
from openkb.progress import rss_mib


def timeout_reason(timeout_s: float) -> str:
    """Why a file failed at its deadline: the same words from every executor."""
    return f"timed out after {timeout_s:g}s (convert_timeout_s)"


def describe_failure(exc: BaseException, memory_mb: int | None) -> str:
    """A reason a user can act on, for any exception prepare may raise."""
    if isinstance(exc, FileRejected):
        return str(exc)
    if isinstance(exc, MemoryError):
        limit = f" (worker_memory_mb = {memory_mb})" if memory_mb else ""
        return f"ran out of memory while converting{limit}"
    if isinstance(exc, RecursionError):
        return "too deeply nested to convert"
    if isinstance(exc, OSError):
        return f"cannot stage it: {exc.strerror or exc}"
    return f"converter error: {type(exc).__name__}: {exc}"[:500]


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what the worker has mapped now plus
    ``memory_mb``: a budget per file, independent of how much virtual memory
    the interpreter and its libraries reserve at start."""
    limit = psutil.Process().memory_info().vms + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def prepare_event(task: PrepareTask, kind: str, *, pid: int | None, worker: int,
                  rss: float, **fields: Any) -> dict[str, Any]:
    """A ``prepare`` progress event for ``task``, whoever sends it: the
    worker itself, ``--jobs 1``, or the pool closing the span of a worker it
    had to kill. A part of a long PDF says which part it is."""
    part: dict[str, str] = {}
    if task.part is not None:
        part = {"part": f"{task.part[0] + 1}/{task.part[1]}"}
    elif task.pages is not None:
        part = {"part": "assemble"}
    return {"event": "prepare", "phase": "prepare", "kind": kind, "pid": pid,
            "worker": worker, "rss_mib": rss, "file": task.display, "doc": task.name,
            **part, **fields}


def worker_main(conn: Connection, worker: int, limits: PrepareLimits, memory_mb: int,
                emit_events: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_memory(memory_mb)
    try:
        _serve(conn, worker, limits, memory_mb, emit_events)
    except (EOFError, OSError):
        # The parent is gone (killed, or crashed) and took its end of the
        # pipe with it: nobody wants the result. Exit quietly rather than
        # print a BrokenPipeError traceback on the user's terminal.
        return


def _serve(conn: Connection, worker: int, limits: PrepareLimits, memory_mb: int,
           emit_events: bool) -> None:
    def event(task: PrepareTask, kind: str, **fields: Any) -> None:
        if emit_events:
            conn.send(("event", prepare_event(task, kind, pid=os.getpid(), worker=worker,
                                              rss=rss_mib(), mono=time.monotonic(),
                                              **fields)))

    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        task: PrepareTask = message[1]
        event(task, "start", bytes=task.size)
        start = time.perf_counter()
        fatal = False
        try:
            result: Any = run_task(task, limits)
            outcome = "ok"
        except BaseException as exc:  # one file's failure, whatever it is, is reported
            result = FileFailure(task.seq, task.display, describe_failure(exc, memory_mb))
            outcome = "error"
            fatal = isinstance(exc, MemoryError)  # the heap may be unusable: start afresh
        dur_ms = round((time.perf_counter() - start) * 1000, 3)
        event(task, "done", dur_ms=dur_ms, outcome=outcome, bytes=task.size)
        peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(("result", task.seq, result, dur_ms, fatal, peak_rss_mib))
        if fatal:
            return
