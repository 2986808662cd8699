"""The event stream every long operation emits (schema ``openkb.progress.v2``).

The core only emits; listeners subscribe: the JSONL writer
(:mod:`openkb.progress_jsonl`), the live view and the debug timing log in the
CLI, the run record `openkb status` reads. With no listener, :meth:`emit`
returns at once and a :meth:`span` costs two ``perf_counter`` calls, which it
needs anyway for the per-phase busy time in the final summary.

A span emits ``kind=start`` before the work and ``kind=done`` with
``dur_ms`` in a ``finally``, so a failed step still closes its span (with
``outcome=error``). Likewise every command that changes the KB runs inside
:meth:`Progress.run`: ``run start`` first, exactly one terminal event
(``complete``, ``error`` or ``cancelled``) last, however it ends; a stream
without one is a run that was killed.

Schema history: v2 (openkb 0.2) reports a file's hashing on its
``prefilter`` point event (``bytes``, ``hash_ms``) instead of as a
``hash`` start/done span, two events fewer per file; a file of 16 MiB or
more also gets a ``hashing`` point event before it is hashed, so a view can
say what it is waiting for. ``openkb progress summarize`` reads v1 and v2.

A listener that raises (a view printing to a closed pipe) is dropped with one
warning: telemetry never fails the operation it describes, and an exception
out of an event emitted inside a commit step would roll that commit back.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from openkb.errors import EXIT_OK, Interrupted, exit_code_for

SCHEMA = "openkb.progress.v2"
READABLE_SCHEMAS = ("openkb.progress.v1", SCHEMA)
TERMINAL_EVENTS = ("complete", "error", "cancelled")
# The steps of a commit, in the order :mod:`openkb.commit.transaction` runs
# them: each is a span (event and phase) and names its crash points.
COMMIT_STEPS = ("journal", "snapshot", "publish", "index", "compile", "registry_write",
                "mark_committed")

Listener = Callable[[dict[str, Any]], None]

log = logging.getLogger("openkb.progress")


_RSS_EVERY_S = 0.1


class _RssSample:
    mib = 0.0
    read_at = float("-inf")  # monotonic


def rss_mib() -> float:
    """This process's RSS, read at most every 100 ms: events come in bursts of
    dozens per document, and psutil costs more than the rest of an event."""
    now = time.monotonic()
    if now - _RssSample.read_at >= _RSS_EVERY_S:
        _RssSample.mib = round(_this_process().memory_info().rss / 1048576, 1)
        _RssSample.read_at = now
    return _RssSample.mib


def new_run_id() -> str:
    """``<pid>-<process start, ms>-<random>``: also names the run's staging dir
    and status record, so recovery can tell whether their owner is alive."""
    return f"{os.getpid()}-{int(_this_process().create_time() * 1000)}-{os.urandom(3).hex()}"


@functools.cache
def _this_process():
    # psutil is imported on first use: a command that emits no event and
    # names no run (a search) starts faster without it.
    import psutil

    return psutil.Process()


@dataclass
class RunOutcome:
    """What the body of :meth:`Progress.run` tells its terminal event: how
    the command ended when it returns normally, and its own summary fields."""

    exit_code: int = EXIT_OK
    cancelled: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


class Progress:
    """Numbers events, stamps them and hands them to every listener."""

    def __init__(self, run_id: str | None = None) -> None:
        if run_id:
            self.run_id = run_id
        self.t0 = time.monotonic()
        self.listeners: list[Listener] = []
        self.phase_busy_ms: dict[str, float] = defaultdict(float)
        self.phase_count: dict[str, int] = defaultdict(int)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._terminal_sent = False

    @functools.cached_property
    def run_id(self) -> str:
        return new_run_id()

    @property
    def active(self) -> bool:
        return bool(self.listeners)

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def emit(self, event: str, kind: str = "point", phase: str | None = None,
             **fields: Any) -> None:
        if not self.listeners:
            return
        record = {"event": event, "phase": phase or event, "kind": kind, "pid": os.getpid(),
                  "worker": None, "rss_mib": rss_mib()}
        record.update(fields)
        self._dispatch(record)

    def forward(self, record: dict[str, Any]) -> None:
        """Emit a record built by a worker process (it carries its own pid,
        worker number, RSS and monotonic time)."""
        if not self.listeners:
            return
        self._dispatch(record)

    def _dispatch(self, record: dict[str, Any]) -> None:
        mono = record.pop("mono", None)
        with self._lock:
            if record["kind"] == "terminal":
                if self._terminal_sent:
                    return
                self._terminal_sent = True
            stamped = {
                "schema": SCHEMA,
                "run_id": self.run_id,
                "seq": next(self._seq),
                "ts_ms": int(time.time() * 1000),
                "t_ms": round(((mono if mono is not None else time.monotonic()) - self.t0)
                              * 1000, 1),
            }
            stamped.update(record)
            for listener in tuple(self.listeners):
                try:
                    listener(stamped)
                except (Exception, SystemExit) as exc:  # rich exits on a broken pipe
                    self._drop(listener, exc)

    def _drop(self, listener: Listener, exc: BaseException) -> None:
        self.listeners.remove(listener)
        log.warning("progress listener %s failed (%s: %s); going on without it",
                    getattr(listener, "__qualname__", type(listener).__name__),
                    type(exc).__name__, exc)

    @contextmanager
    def span(self, event: str, phase: str | None = None, **fields: Any) -> Iterator[dict]:
        """Time a step; yields a dict the body may add fields to for the done event."""
        phase = phase or event
        extra: dict[str, Any] = {}
        if self.listeners:
            self.emit(event, "start", phase, **fields)
        start = time.perf_counter()
        outcome = "ok"
        try:
            yield extra
        except BaseException as exc:
            outcome = "error"
            extra.setdefault("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        finally:
            dur_ms = (time.perf_counter() - start) * 1000
            self.phase_busy_ms[phase] += dur_ms
            self.phase_count[phase] += 1
            extra["dur_ms"] = round(dur_ms, 3)
            if self.listeners:
                # The body's fields win over the start's (it may have learnt
                # better), but not over the fact that it raised.
                done = {"outcome": outcome, **fields, **extra}
                if outcome == "error":
                    done["outcome"] = "error"
                self.emit(event, "done", phase, **done)

    def add_busy(self, phase: str, dur_ms: float) -> None:
        """Account time measured elsewhere (a worker's conversion)."""
        self.phase_busy_ms[phase] += dur_ms
        self.phase_count[phase] += 1

    def terminal(self, event: str, **fields: Any) -> None:
        assert event in TERMINAL_EVENTS
        self.emit(event, "terminal", "run", **fields)

    @contextmanager
    def run(self, command: str, **fields: Any) -> Iterator[RunOutcome]:
        """Bracket a whole command with ``run start`` and its terminal event.

        The terminal event is sent from a ``finally``, so an exception still
        ends the run (as ``error``, or ``cancelled`` for Ctrl-C) and carries
        the exit code the CLI will use."""
        self.emit("run", "start", "run", command=command, **fields)
        outcome = RunOutcome()
        start = time.monotonic()
        error: BaseException | None = None
        try:
            yield outcome
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is not None:
                event = "cancelled" if isinstance(error, KeyboardInterrupt | Interrupted) \
                    else "error"
                exit_code = exit_code_for(error)
            else:
                event = "cancelled" if outcome.cancelled else "complete"
                exit_code = outcome.exit_code
            self.terminal(event, **{
                **outcome.fields,
                "phase_busy_ms": {k: round(v, 1) for k, v in self.phase_busy_ms.items()},
                "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                     1),
                "wall_ms": round((time.monotonic() - start) * 1000, 1),
                "exit_code": exit_code,
                "error": None if error is None else f"{type(error).__name__}: {error}"[:1000],
            })
