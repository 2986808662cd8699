"""Reading progress JSONL back: where the time of a run went.

The reader is as forgiving as the writer is careful: a torn line (a crash in
the middle of a write) or a line from something else is counted and
skipped, never fatal, so the file of a crashed run still summarises.

Per phase: how many spans, *busy* time (the sum of their durations: CPU-ish
work, summed over workers) and *wall* time (the union of their intervals on
the run's clock: how long that phase was going on at all). Busy much larger
than wall means the phase ran in parallel; lock wait and a commit step with
a large wall time but few spans point at a storage stall, and so does a
heartbeat that saw no progress for a long time while no worker was busy.

The file is read line by line and folded into a small tally per run (no
record is kept), so the file of a 100,000-file run, hundreds of MB, is
summarised in bounded memory.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from openkb.errors import UsageError
from openkb.progress import READABLE_SCHEMAS, TERMINAL_EVENTS

SLOWEST_FILES = 10


@dataclass
class PhaseStats:
    phase: str
    count: int = 0
    busy_ms: float = 0.0
    wall_ms: float = 0.0
    max_ms: float = 0.0


@dataclass
class RunSummary:
    run_id: str
    runs_in_file: list[str]
    events: int
    torn_lines: int
    foreign_lines: int
    wall_ms: float
    phases: list[PhaseStats]
    lock_wait_ms: float
    lock_waits: int
    slowest_files: list[dict[str, Any]]
    failed_files: list[dict[str, Any]]
    terminal: dict[str, Any] | None
    heartbeats: int = 0
    longest_stall_s: float = 0.0  # the most a heartbeat saw without progress
    max_rss_mib: float = 0.0
    notes: list[str] = field(default_factory=list)


def iter_file(path: str) -> Iterator[dict[str, Any] | str]:
    """Each line's record, or ``"torn"`` / ``"foreign"`` for a line that is not one."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; a generator needs it open)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield "torn"
                continue
            if not isinstance(record, dict) or record.get("schema") not in READABLE_SCHEMAS:
                yield "foreign"
                continue
            yield record


class _RunTally:
    """What one run's records add up to."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.events = 0
        self.first_t = float("inf")
        self.last_t = float("-inf")
        self.phases: dict[str, PhaseStats] = {}
        self.intervals: dict[str, array] = {}  # flat (start, end) pairs, 16 bytes a span
        self.slow: list[tuple[float, int, dict[str, Any]]] = []  # min-heap of the slowest
        self.failed: list[dict[str, Any]] = []
        self.terminal: dict[str, Any] | None = None
        self.lock_wait_ms = 0.0
        self.lock_waits = 0
        self.heartbeats = 0
        self.longest_stall_s = 0.0
        self.max_rss = 0.0

    def add(self, record: dict[str, Any]) -> None:
        self.events += 1
        t_ms = _number(record.get("t_ms"))
        self.first_t, self.last_t = min(self.first_t, t_ms), max(self.last_t, t_ms)
        self.max_rss = max(self.max_rss, _number(record.get("rss_mib")))
        kind, event = record.get("kind"), record.get("event")
        if kind == "done" and "dur_ms" in record:
            self._span(record, str(record.get("phase") or event), _number(record["dur_ms"]),
                       t_ms)
        elif event == "prefilter" and "hash_ms" in record:  # v2: the hash, folded in
            self._span(record, "prefilter", _number(record["hash_ms"]), t_ms)
        elif event == "file_error":
            self.failed.append({"file": record.get("file"), "error": record.get("error")})
        elif event == "heartbeat":
            self.heartbeats += 1
            self.longest_stall_s = max(self.longest_stall_s,
                                       _number(record.get("since_progress_s")))
        elif kind == "terminal" and event in TERMINAL_EVENTS:
            self.terminal = record

    def _span(self, record: dict[str, Any], phase: str, dur: float, end: float) -> None:
        stats = self.phases.setdefault(phase, PhaseStats(phase))
        stats.count += 1
        stats.busy_ms += dur
        stats.max_ms = max(stats.max_ms, dur)
        self.intervals.setdefault(phase, array("d")).extend((end - dur, end))
        if record.get("event") == "lock_wait":
            self.lock_wait_ms += dur
            self.lock_waits += 1
        if record.get("event") == "prepare" and record.get("file"):
            entry = {"file": record["file"], "dur_ms": dur, "worker": record.get("worker"),
                     "outcome": record.get("outcome", "ok")}
            item = (dur, self.events, entry)  # events: a tie-breaker, dicts do not compare
            if len(self.slow) < SLOWEST_FILES:
                heapq.heappush(self.slow, item)
            elif dur > self.slow[0][0]:
                heapq.heapreplace(self.slow, item)

    def summary(self, runs_in_file: list[str], torn: int, foreign: int) -> RunSummary:
        for phase, stats in self.phases.items():
            stats.wall_ms = round(_union_ms(self.intervals[phase]), 3)
            stats.busy_ms = round(stats.busy_ms, 3)
            stats.max_ms = round(stats.max_ms, 3)
        notes = []
        if self.terminal is None:
            notes.append("no terminal event: the run was killed or is still running")
        return RunSummary(
            run_id=self.run_id, runs_in_file=runs_in_file, events=self.events,
            torn_lines=torn, foreign_lines=foreign,
            wall_ms=round(self.last_t - self.first_t, 3) if self.events else 0.0,
            phases=sorted(self.phases.values(), key=lambda s: -s.busy_ms),
            lock_wait_ms=round(self.lock_wait_ms, 3), lock_waits=self.lock_waits,
            slowest_files=[entry for _, _, entry in sorted(self.slow, reverse=True)],
            failed_files=self.failed, terminal=self.terminal, heartbeats=self.heartbeats,
            longest_stall_s=self.longest_stall_s, max_rss_mib=self.max_rss, notes=notes)


def _number(value: Any) -> float:
    """A numeric field, or 0 for a missing or foreign value (the reader never fails)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _union_ms(flat: array) -> float:
    """Total length of the union of the (start, end) pairs in ``flat``."""
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(zip(flat[0::2], flat[1::2], strict=True)):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def summarize(path: str, run_id: str | None = None) -> RunSummary:
    """Summarise one run of the file (default: the last one to start in it)."""
    tallies: dict[str, _RunTally] = {}
    torn = foreign = 0
    for item in iter_file(path):
        if item == "torn":
            torn += 1
        elif item == "foreign":
            foreign += 1
        else:
            assert isinstance(item, dict)
            rid = str(item.get("run_id"))
            tally = tallies.get(rid)
            if tally is None:
                tally = tallies[rid] = _RunTally(rid)
            tally.add(item)
    if not tallies:
        raise UsageError(f"{path} holds no openkb progress events "
                         f"({' or '.join(READABLE_SCHEMAS)})")
    if run_id is None:
        run_id = list(tallies)[-1]
    elif run_id not in tallies:
        raise UsageError(f"no run {run_id!r} in {path}", hint=f"runs: {', '.join(tallies)}")
    return tallies[run_id].summary(list(tallies), torn, foreign)


def write_chrome_trace(path: str, run_id: str, out: str) -> None:
    """The run as Chrome trace events (ui.perfetto.dev, chrome://tracing): one
    track per process, one per worker, spans as complete events."""
    trace: list[dict[str, Any]] = []
    tracks: set[tuple[Any, Any]] = set()
    for record in iter_file(path):
        if not isinstance(record, dict) or str(record.get("run_id")) != run_id:
            continue
        kind = record.get("kind")
        pid = record.get("pid", 0)
        worker = record.get("worker")
        tid = worker if worker is not None else 0
        if (pid, tid) not in tracks:
            tracks.add((pid, tid))
            trace.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                          "args": {"name": f"worker {worker}" if worker is not None
                                   else "openkb"}})
        args = {k: record[k] for k in ("file", "doc", "txid", "outcome", "error", "counts")
                if k in record}
        ts_us = _number(record.get("t_ms")) * 1000
        if kind == "done" and "dur_ms" in record:
            dur_us = _number(record["dur_ms"]) * 1000
            trace.append({"name": record.get("event"), "cat": record.get("phase"), "ph": "X",
                          "ts": ts_us - dur_us, "dur": dur_us, "pid": pid, "tid": tid,
                          "args": args})
        elif kind in ("point", "terminal", "progress"):
            trace.append({"name": record.get("event"), "cat": record.get("phase"), "ph": "i",
                          "s": "t", "ts": ts_us, "pid": pid, "tid": tid, "args": args})
    try:
        with open(out, "wb") as handle:
            handle.write(orjson.dumps({"traceEvents": trace, "displayTimeUnit": "ms"}))
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from exc
