"""What the user sees while `openkb add` runs: a listener on the event stream.

On a terminal (stderr is a TTY): a live rich view with prepared and committed
counts against the total (a spinner while the scan is still counting), the
file each stage is on, rate and ETA, and who holds the lock while we wait
for it. Elsewhere (CI logs, pipes): one plain status line every
:data:`PLAIN_EVERY_S` seconds and at each phase change. Nothing at all with
``--quiet``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bars
from rich.text import Text

from openkb.cli.render import safe

PLAIN_EVERY_S = 15.0


class RunState:
    """The latest numbers, folded from events; shared by both views."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"total": 0, "prepared": 0, "committed": 0, "skipped": 0,
                                       "failed": 0}
        self.phase = "scan"
        self.scanning = True
        self.preparing: dict[Any, str] = {}  # worker -> file
        self.committing = ""
        self.waiting_for: str | None = None
        self.started = time.monotonic()

    def fold(self, record: dict[str, Any]) -> bool:
        """Update from one event; True if the phase changed."""
        event, kind = record.get("event"), record.get("kind")
        if "counts" in record and isinstance(record["counts"], dict):
            # The main process counts a prepared file when it collects it;
            # worker events arrive first, so keep whichever is ahead.
            prepared = self.counts.get("prepared", 0)
            self.counts.update(record["counts"])
            self.counts["prepared"] = max(prepared, self.counts.get("prepared", 0))
        changed = False
        if event == "phase" and record.get("phase") != self.phase:
            self.phase = record["phase"]
            changed = True
        if event == "scan" and kind == "done":
            self.scanning = False
        elif event == "prepare":
            if kind == "start":
                self.preparing[record.get("worker")] = record.get("file", "")
            elif kind == "done":
                self.preparing.pop(record.get("worker"), None)
                self.counts["prepared"] = self.counts.get("prepared", 0) + 1
        elif event == "commit" and kind == "start":
            doc = record.get("doc")
            self.committing = doc if isinstance(doc, str) else ", ".join(map(str, doc or []))
        elif event == "commit" and kind == "done":
            self.committing = ""
        elif event == "lock_acquired":
            self.waiting_for = None
        return changed

    def rate_and_eta(self) -> tuple[float, float | None]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        done = self.counts.get("committed", 0)
        rate = done / elapsed
        remaining = (self.counts.get("total", 0) - done - self.counts.get("skipped", 0)
                     - self.counts.get("failed", 0))
        eta = remaining / rate if rate > 0 and remaining > 0 else None
        return rate, eta


class PlainReporter:
    """A status line now and then, for logs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state = RunState()
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            changed = self.state.fold(record)
            now = time.monotonic()
            if changed or now - self._last >= PLAIN_EVERY_S:
                self._last = now
                self.console.print(self.line(), markup=False, highlight=False)

    def line(self) -> str:
        c = self.state.counts
        rate, eta = self.state.rate_and_eta()
        eta_text = f", ETA {eta:.0f}s" if eta is not None else ""
        return (f"openkb: {self.state.phase}: {c.get('committed', 0)}/{c.get('total', 0)} "
                f"committed, {c.get('prepared', 0)} prepared, {c.get('skipped', 0)} skipped, "
                f"{c.get('failed', 0)} failed ({rate:.1f} docs/s{eta_text})")

    def lock_wait(self, who: str, waited: float) -> None:
        self.console.print(f"openkb: waiting for lock held by {who}", markup=False)

    def close(self) -> None:
        pass


class LiveView:
    """The rich live view for a terminal."""

    def __init__(self, console: Console) -> None:
        self.state = RunState()
        self._bars = Bars(
            SpinnerColumn(),
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._prepared = self._bars.add_task("prepared", total=None)
        self._committed = self._bars.add_task("committed", total=None)
        self._live = Live(Group(self._bars, Text("")), console=console, refresh_per_second=8,
                          transient=False)
        self._lock = threading.Lock()
        self._live.start()

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.state.fold(record)
            self._refresh()

    def lock_wait(self, who: str, waited: float) -> None:
        with self._lock:
            self.state.waiting_for = f"{who}, waited {waited:.0f}s"
            self._refresh()

    def _refresh(self) -> None:
        c = self.state.counts
        total = None if self.state.scanning else c.get("total", 0)
        self._bars.update(self._prepared, completed=c.get("prepared", 0), total=total)
        self._bars.update(self._committed, completed=c.get("committed", 0), total=total)
        lines = []
        for worker, file in sorted(self.state.preparing.items(), key=lambda kv: str(kv[0])):
            lines.append(f"[cyan]prepare[/] (worker {worker}): {safe(str(file))}")
        if self.state.committing:
            lines.append(f"[green]commit[/]: {safe(self.state.committing)}")
        if self.state.waiting_for:
            lines.append(f"[yellow]waiting for lock held by {safe(self.state.waiting_for)}[/]")
        rate, _ = self.state.rate_and_eta()
        lines.append(f"[dim]{self.state.phase} · {rate:.1f} docs/s · skipped "
                     f"{c.get('skipped', 0)} · failed {c.get('failed', 0)}[/]")
        self._live.update(Group(self._bars, Text.from_markup("\n".join(lines))))

    def close(self) -> None:
        self._live.stop()
