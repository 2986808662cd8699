"""Reading progress JSONL back: where the time of a run went.

The reader is as forgiving as the writer is careful: a torn line (a crash in
the middle of a write) or a line from something else is counted and
skipped, never fatal, so the file of a crashed run still summarises.

Per phase: how many spans, *busy* time (the sum of their durations: CPU-ish
work, summed over workers) and *wall* time (the union of their intervals on
the run's clock: how long that phase was going on at all). Busy much larger
than wall means the phase ran in parallel; lock wait and a commit step with
a large wall time but few spans point at a storage stall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from openkb.errors import UsageError
from openkb.progress import SCHEMA, TERMINAL_EVENTS


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
    max_rss_mib: float = 0.0
    notes: list[str] = field(default_factory=list)


def read_events(path: str) -> tuple[dict[str, list[dict[str, Any]]], int, int]:
    """Records grouped by run id (in file order), plus torn and foreign line counts."""
    runs: dict[str, list[dict[str, Any]]] = {}
    torn = foreign = 0
    try:
        with open(path, "rb") as handle:
            lines = handle.readlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    for line in lines:
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            torn += 1
            continue
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            foreign += 1
            continue
        runs.setdefault(str(record.get("run_id")), []).append(record)
    return runs, torn, foreign


def _union_ms(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def summarize(path: str, run_id: str | None = None) -> RunSummary:
    runs, torn, foreign = read_events(path)
    if not runs:
        raise UsageError(f"{path} holds no {SCHEMA} events")
    if run_id is None:
        run_id = list(runs)[-1]
    elif run_id not in runs:
        raise UsageError(f"no run {run_id!r} in {path}", hint=f"runs: {', '.join(runs)}")
    records = sorted(runs[run_id], key=lambda r: r.get("seq", 0))
    phases: dict[str, PhaseStats] = {}
    intervals: dict[str, list[tuple[float, float]]] = {}
    slow: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    terminal = None
    lock_wait_ms, lock_waits, heartbeats, max_rss = 0.0, 0, 0, 0.0
    times = [r.get("t_ms", 0.0) for r in records]
    for record in records:
        max_rss = max(max_rss, float(record.get("rss_mib") or 0.0))
        kind, event = record.get("kind"), record.get("event")
        if kind == "done" and "dur_ms" in record:
            phase = str(record.get("phase") or event)
            stats = phases.setdefault(phase, PhaseStats(phase))
            dur = float(record["dur_ms"])
            stats.count += 1
            stats.busy_ms += dur
            stats.max_ms = max(stats.max_ms, dur)
            end = float(record.get("t_ms", 0.0))
            intervals.setdefault(phase, []).append((end - dur, end))
            if event == "lock_wait":
                lock_wait_ms += dur
                lock_waits += 1
            if event == "prepare" and record.get("file"):
                slow.append({"file": record["file"], "dur_ms": dur,
                             "worker": record.get("worker"),
                             "outcome": record.get("outcome", "ok")})
        elif event == "file_error":
            failed.append({"file": record.get("file"), "error": record.get("error")})
        elif event == "heartbeat":
            heartbeats += 1
        elif kind == "terminal" and event in TERMINAL_EVENTS:
            terminal = record
    for phase, stats in phases.items():
        stats.wall_ms = round(_union_ms(intervals[phase]), 3)
        stats.busy_ms = round(stats.busy_ms, 3)
    slow.sort(key=lambda s: -s["dur_ms"])
    notes = []
    if terminal is None:
        notes.append("no terminal event: the run was killed or is still running")
    return RunSummary(
        run_id=run_id, runs_in_file=list(runs), events=len(records), torn_lines=torn,
        foreign_lines=foreign, wall_ms=round(max(times) - min(times), 3) if times else 0.0,
        phases=sorted(phases.values(), key=lambda s: -s.busy_ms), lock_wait_ms=round(
            lock_wait_ms, 3), lock_waits=lock_waits, slowest_files=slow[:10],
        failed_files=failed, terminal=terminal, heartbeats=heartbeats, max_rss_mib=max_rss,
        notes=notes)


def write_chrome_trace(path: str, run_id: str, out: str) -> None:
    """The run as Chrome trace events: one track per process and worker."""
    runs, _, _ = read_events(path)
    trace: list[dict[str, Any]] = []
    for record in runs.get(run_id, []):
        kind = record.get("kind")
        pid = record.get("pid", 0)
        tid = record.get("worker") if record.get("worker") is not None else 0
        args = {k: record[k] for k in ("file", "doc", "txid", "outcome", "error", "counts")
                if k in record}
        ts_us = float(record.get("t_ms", 0.0)) * 1000
        if kind == "done" and "dur_ms" in record:
            dur_us = float(record["dur_ms"]) * 1000
            trace.append({"name": record.get("event"), "cat": record.get("phase"), "ph": "X",
                          "ts": ts_us - dur_us, "dur": dur_us, "pid": pid, "tid": tid,
                          "args": args})
        elif kind in ("point", "terminal", "progress"):
            trace.append({"name": record.get("event"), "cat": record.get("phase"), "ph": "i",
                          "s": "t", "ts": ts_us, "pid": pid, "tid": tid, "args": args})
    with open(out, "wb") as handle:
        handle.write(orjson.dumps({"traceEvents": trace, "displayTimeUnit": "ms"}))
