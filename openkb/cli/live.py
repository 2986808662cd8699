"""What the user sees while `openkb add` runs: a listener on the event stream.

On a terminal (stderr is a TTY): a live rich view with prepared and committed
counts against the total (a spinner while the scan is still counting), the
file each stage is on, rate and ETA, and who holds the lock while we wait
for it. Elsewhere (CI logs, pipes): one plain status line every
:data:`PLAIN_EVERY_S` seconds and at each phase change. Nothing at all with
``--quiet`` (the CLI then subscribes no view).

Events only update a :class:`RunState` (a few dict operations: a run emits
dozens per document); the live view draws it at its own refresh rate.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as Bars
from rich.text import Text

from openkb.api import COMMIT_STEPS, TERMINAL_EVENTS
from openkb.cli.render import safe

PLAIN_EVERY_S = 15.0
# The rate (and so the ETA) is measured over this much recent time: a rate
# since the start would hide a stall and be slow to recover from one.
RATE_WINDOW_S = 30.0
# Say "no progress for Ns" once nothing has been prepared or committed this long.
STALL_NOTE_S = 10.0


class RunState:
    """The latest numbers, folded from events; shared by both views."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"total": 0, "prepared": 0, "committed": 0, "skipped": 0,
                                       "failed": 0}
        self.phase = "scan"
        self.scanning = True
        self.hashing = ""
        self.preparing: dict[Any, str] = {}  # worker -> file
        self.committing = ""
        self.commit_step = ""
        self.waiting_for: str | None = None  # the lock holder, while we wait for it
        self.waiting_since: float | None = None
        self.llm: dict[str, Any] | None = None  # the LLM stage's counters, when it runs
        self.started = time.monotonic()
        self.last_progress = self.started
        # Skips and failures the scan found are not among the total's files.
        self._scan_skipped = self._scan_failed = 0
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])

    def fold(self, record: dict[str, Any]) -> bool:
        """Update from one event; True if the phase changed."""
        event, kind = record.get("event"), record.get("kind")
        if isinstance(record.get("counts"), dict):
            self._fold_counts(record["counts"])
        if event == "phase":
            return self._enter_phase(str(record.get("phase")))
        if kind == "terminal":  # whatever was in flight is over (or was killed)
            self.waiting_for = self.waiting_since = None
            self.hashing = self.committing = self.commit_step = ""
            self.preparing.clear()
            return self._enter_phase(str(event))
        if event == "scan" and kind == "done":
            self.scanning = False
        elif event == "hashing":  # only files big enough to take a while
            self.hashing = record.get("file", "")
        elif event in ("prefilter", "file_error"):
            self.hashing = ""
        elif event == "prepare":
            self._fold_prepare(record, kind)
        elif event == "commit":
            self.committing = _docs_text(record.get("doc")) if kind == "start" else ""
            self.commit_step = ""
        elif event in COMMIT_STEPS and kind == "start":
            self.commit_step = str(event)
        elif event == "committed":
            self.last_progress = time.monotonic()
            self._samples.append((self.last_progress, self.counts.get("committed", 0)))
        elif event == "lock_wait":
            self.waiting_since = time.monotonic() if kind == "start" else None
            if kind == "done":
                self.waiting_for = None
        elif event == "lock_acquired":
            self.waiting_for = self.waiting_since = None
        elif event == "llm" and isinstance(record.get("llm"), dict):
            self.llm = record["llm"]
        return False

    def _fold_counts(self, counts: dict[str, Any]) -> None:
        # The main process counts a prepared file when it collects it;
        # worker events arrive first, so keep whichever is ahead.
        prepared = self.counts.get("prepared", 0)
        self.counts.update({k: v for k, v in counts.items() if isinstance(v, int)})
        self.counts["prepared"] = max(prepared, self.counts.get("prepared", 0))

    def _enter_phase(self, phase: str) -> bool:
        if phase == self.phase:
            return False
        if self.phase == "scan":  # the scan's own skips and failures are in now
            self._scan_skipped = self.counts.get("skipped", 0)
            self._scan_failed = self.counts.get("failed", 0)
            self.scanning = False
        self.phase = phase
        return True

    def _fold_prepare(self, record: dict[str, Any], kind: Any) -> None:
        worker = record.get("worker")
        part = record.get("part")
        if kind == "start":
            file = str(record.get("file", ""))
            self.preparing[worker] = f"{file} (part {part})" if part else file
        elif kind == "done":
            self.preparing.pop(worker, None)
            self.last_progress = time.monotonic()
            # A long PDF read in parts is one file, prepared once assembled
            # (a failed part is counted by the main process's counts).
            if part in (None, "assemble"):
                self.counts["prepared"] = self.counts.get("prepared", 0) + 1

    def remaining(self) -> int:
        """Files of the total not yet committed, skipped or failed."""
        c = self.counts
        settled = (c.get("committed", 0) + c.get("skipped", 0) - self._scan_skipped
                   + c.get("failed", 0) - self._scan_failed)
        return max(0, c.get("total", 0) - settled)

    def rate_and_eta(self, now: float | None = None) -> tuple[float, float | None]:
        """Documents committed per second over the last :data:`RATE_WINDOW_S`,
        and the seconds left at that rate (None while it cannot be told)."""
        now = time.monotonic() if now is None else now
        samples = self._samples
        while len(samples) > 1 and samples[1][0] <= now - RATE_WINDOW_S:
            samples.popleft()  # keep one sample at or before the window's start
        since, committed_then = samples[0]
        rate = (self.counts.get("committed", 0) - committed_then) / max(now - since, 1e-3)
        remaining = self.remaining()
        # Blocked on the lock (someone else's run), the rate says nothing.
        if self.scanning or rate <= 0 or not remaining or self.waiting_for is not None:
            return rate, None
        return rate, remaining / rate

    def stalled_for(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.last_progress


def llm_text(llm: dict[str, Any]) -> str:
    """The LLM stage's counter: calls done of total, in flight, retries, 429s, tokens."""
    return (f"LLM {llm.get('done', 0)}/{llm.get('total', 0)} ({llm.get('cached', 0)} cached,"
            f" {llm.get('in_flight', 0)} in flight, {llm.get('retries', 0)} retries,"
            f" {llm.get('rate_limited', 0)}x429, tokens {llm.get('tokens_in', 0):,} in /"
            f" {llm.get('tokens_out', 0):,} out)")


def _docs_text(doc: Any) -> str:
    if isinstance(doc, list):
        names = [str(d) for d in doc]
        if not names:
            return ""
        return names[0] + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")
    return "" if doc is None else str(doc)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _tail(text: str, width: int) -> str:
    """The end of a long path, which names the file, rather than its start."""
    return text if len(text) <= width else "…" + text[-max(width - 1, 1):]


class PlainReporter:
    """A status line now and then, for logs: every :data:`PLAIN_EVERY_S` and
    at each phase change. Stops quietly if its output goes away."""

    def __init__(self, console: Console, every_s: float = PLAIN_EVERY_S) -> None:
        self.console = console
        # rich answers a broken pipe by pointing *stdout* at /dev/null and
        # exiting; for a status line, just stop printing.
        console.on_broken_pipe = _output_gone  # type: ignore[method-assign]
        self.state = RunState()
        self._every_s = every_s
        self._last = time.monotonic()
        self._broken = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="openkb-status-line",
                                        daemon=True)
        self._ticker.start()

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self.state.fold(record):
                self._print(self.line())

    def _tick(self) -> None:
        # Its own clock: a long conversion or lock wait emits no event.
        while not self._stop.wait(min(1.0, self._every_s)):
            with self._lock:
                if time.monotonic() - self._last >= self._every_s:
                    self._print(self.line())

    def _print(self, line: str) -> None:
        self._last = time.monotonic()
        if self._broken:
            return
        try:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        except (OSError, _OutputGone):
            self._broken = True

    def line(self) -> str:
        state = self.state
        c = state.counts
        # Elapsed time: CI logs do not always stamp lines.
        head = f"openkb [{_clock(time.monotonic() - state.started)}]"
        if state.scanning:
            return f"{head}: scanning: {c.get('total', 0)} files found"
        rate, eta = state.rate_and_eta()
        eta_text = f", ETA {_clock(eta)}" if eta is not None else ""
        text = (f"{head}: {state.phase}: {c.get('committed', 0)}/{c.get('total', 0)} committed,"
                f" {c.get('prepared', 0)} prepared, {c.get('skipped', 0)} skipped,"
                f" {c.get('failed', 0)} failed ({rate:.1f} docs/s{eta_text})")
        if state.llm is not None:
            text += f", {llm_text(state.llm)}"
        if state.waiting_since is not None:
            text += f", waiting for the lock {time.monotonic() - state.waiting_since:.0f}s"
        return text

    def lock_wait(self, who: str, waited: float) -> None:
        with self._lock:
            self.state.waiting_for = who
            self._print(f"openkb: waiting for lock held by {_shown(who).plain}")

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()


class _OutputGone(Exception):
    pass


def _output_gone() -> None:
    raise _OutputGone


class LiveView:
    """The rich live view for a terminal."""

    def __init__(self, console: Console) -> None:
        self.state = RunState()
        self._console = console
        self._waited_s = 0.0
        self._bars = Bars(
            SpinnerColumn(),
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._prepared = self._bars.add_task("prepared", total=None)
        self._committed = self._bars.add_task("committed", total=None)
        self._lock = threading.Lock()
        self._live = Live(console=console, refresh_per_second=8, transient=False,
                          get_renderable=self._render)
        self._live.start()
        self._log_streams = _log_through(sys.stderr)

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.state.fold(record)

    def lock_wait(self, who: str, waited: float) -> None:
        with self._lock:
            self.state.waiting_for = who
            self._waited_s = waited

    def _render(self) -> RenderableType:
        with self._lock:
            state = self.state
            c = state.counts
            total = None if state.scanning else c.get("total", 0)
            self._bars.update(self._prepared, completed=c.get("prepared", 0), total=total)
            # Failed and duplicate files will never commit: the bar is full
            # when everything that can be committed is.
            committable = None if total is None else c.get("committed", 0) + state.remaining()
            self._bars.update(self._committed, completed=c.get("committed", 0),
                              total=committable)
            lines = [*self._stage_lines(), self._status_line()]
        return Group(self._bars, *lines)

    def _stage_lines(self) -> list[Text]:
        state = self.state
        width = max(self._console.width - 24, 20)
        lines = []
        if state.scanning:
            lines.append(_line("scan", f"{state.counts.get('total', 0)} files found", "cyan",
                               width))
        if state.hashing:
            lines.append(_line("hash", state.hashing, "cyan", width))
        for worker, file in sorted(state.preparing.items(), key=lambda kv: str(kv[0])):
            lines.append(_line(f"prepare (worker {worker})", file, "cyan", width))
        if state.llm is not None:
            lines.append(_line("llm", llm_text(state.llm), "magenta", width))
        if state.committing:
            step = f" [{state.commit_step}]" if state.commit_step else ""
            lines.append(_line(f"commit{step}", state.committing, "green", width))
        if state.waiting_for:
            text = _shown(f"waiting for lock held by {state.waiting_for}, waited "
                          f"{_clock(self._waited_s)}")
            text.stylize("yellow")
            lines.append(text)
        return lines

    def _status_line(self) -> Text:
        state = self.state
        c = state.counts
        rate, eta = state.rate_and_eta()
        parts = [state.phase, f"{rate:.1f} docs/s"]
        running = state.phase not in TERMINAL_EVENTS
        if running:
            parts.append(f"ETA {_clock(eta)}" if eta is not None else "ETA -")
        parts += [f"skipped {c.get('skipped', 0)}", f"failed {c.get('failed', 0)}"]
        stalled = state.stalled_for()
        if running and stalled >= STALL_NOTE_S:
            parts.append(f"no progress for {_clock(stalled)}")
        return Text(" · ".join(parts), style="dim", no_wrap=True, overflow="ellipsis")

    def close(self) -> None:
        self._live.stop()
        for handler, stream in self._log_streams:
            handler.setStream(stream)


def _log_through(proxy: Any) -> list[tuple[logging.StreamHandler, Any]]:
    """Point openkb's log handlers at the live display's stderr proxy (what
    ``Live`` put in ``sys.stderr``), so a ``--debug`` timing line is printed
    above the display instead of leaving a stale copy of it on the screen.
    Returns the (handler, stream) pairs to put back."""
    if proxy is sys.__stderr__ or not hasattr(proxy, "rich_proxied_file"):
        return []  # not redirected (stderr is not a terminal)
    swapped = []
    for handler in logging.getLogger("openkb").handlers:
        if isinstance(handler, logging.StreamHandler) and \
                handler.stream is proxy.rich_proxied_file:
            swapped.append((handler, handler.setStream(proxy)))
    return swapped


def _line(label: str, value: str, style: str, width: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(label, style=style)
    text.append(": ")
    text.append_text(_shown(_tail(str(value), width)))
    return text


def _shown(text: str) -> Text:
    """A name from the input or the KB, control characters escaped (a
    newline or escape sequence in a file name must not redraw the screen)."""
    return Text.from_markup(safe(text), style="", overflow="ellipsis")
