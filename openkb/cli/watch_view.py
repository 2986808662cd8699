"""What the user sees while `openkb watch` runs, on a terminal: one line,
"watching N paths · last batch … · idle Ns", and while a batch syncs, how
far it is. A listener on the event stream, like :mod:`openkb.cli.live`:
``watch_batch`` start and done events frame each batch, and the batch's
own run events (it is a sync) fill in its progress. Off a terminal the
watch prints a line per batch instead (:mod:`openkb.cli.sync_cmds`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from openkb.cli.live import RunState, _clock, _shown


class WatchState:
    """The watch's numbers, folded from events."""

    def __init__(self, watched: int = 0) -> None:
        self.watched = watched
        self.batch: dict[str, Any] | None = None  # the batch in flight: its start event
        self.run = RunState()  # the batch in flight's sync
        self.last: str | None = None  # what the last batch did
        self.last_error: str | None = None
        self.idle_since = time.monotonic()

    def fold(self, record: dict[str, Any]) -> None:
        if record.get("event") != "watch_batch":
            if self.batch is not None:
                self.run.fold(record)
            return
        if isinstance(record.get("watched"), int):
            self.watched = record["watched"]
        if record.get("kind") == "start":
            self.batch = record
            self.run = RunState()
        elif record.get("kind") == "done":
            self.batch = None
            self.idle_since = time.monotonic()
            self.last = describe_batch(record, time.strftime("%H:%M:%S"))
            if record.get("error"):
                self.last_error = str(record["error"])

    def line(self, now: float | None = None, width: int | None = None) -> str:
        """The line; at most ``width`` characters, cut in the middle (the
        batches), so the head and the idle time always show."""
        now = time.monotonic() if now is None else now
        head = f"watching {self.watched} path{'s' if self.watched != 1 else ''} · "
        middle = []
        if self.batch is not None:
            middle.append(f"{_batch_name(self.batch)}: {self._progress()}")
        middle.append(f"last batch {self.last}" if self.last else "no batch yet")
        tail = f" · idle {_clock(now - self.idle_since)}" if self.batch is None else ""
        body = " · ".join(middle)
        if width is not None and len(head) + len(body) + len(tail) > width:
            room = max(width - len(head) - len(tail) - 1, 0)
            body = body[:room] + "…"
        return head + body + tail

    def _progress(self) -> str:
        run = self.run
        c = run.counts
        if run.scanning:
            return f"scanning, {c.get('total', 0)} files found"
        return (f"{run.phase} {c.get('committed', 0)}/{c.get('total', 0)} committed, "
                f"{c.get('skipped', 0)} unchanged or skipped")


def _batch_name(record: dict[str, Any]) -> str:
    touched = record.get("paths") or 0
    if not touched:
        return f"#{record.get('batch', '?')} catch-up sync"
    return f"#{record.get('batch', '?')} ({touched} changed)"


def describe_batch(record: dict[str, Any], when: str) -> str:
    """A finished batch in a few words: "#3 (2 changed) at 12:03:04: 1 added,
    1 removed in 0.4s", or what stopped it."""
    head = f"{_batch_name(record)} at {when}"
    if record.get("outcome") == "error":
        return f"{head}: {record.get('error', 'failed')}"
    counts = record.get("counts") if isinstance(record.get("counts"), dict) else {}
    done = [f"{n} {what}" for what, n in counts.items() if isinstance(n, int) and n]
    took = f" in {record['dur_ms'] / 1000:.1f}s" if isinstance(record.get("dur_ms"),
                                                               (int, float)) else ""
    stopped = f"; {record['error']}" if record.get("error") else ""  # a full disk
    return f"{head}: {', '.join(done) or 'no change'}{took}{stopped}"


class WatchLiveView:
    """The live line on a terminal, redrawn twice a second (the idle time
    moves without events)."""

    def __init__(self, console: Console, watched: int) -> None:
        self.state = WatchState(watched)
        self._console = console
        self._lock = threading.Lock()
        self._live = Live(console=console, refresh_per_second=2, transient=False,
                          get_renderable=self._render)
        self._live.start()

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.state.fold(record)

    def _render(self) -> RenderableType:
        with self._lock:
            line = self.state.line(width=self._console.width)
        text = _shown(line)
        text.no_wrap = True
        text.overflow = "ellipsis"
        return Text.assemble(text, style="dim")

    def close(self) -> None:
        self._live.stop()
