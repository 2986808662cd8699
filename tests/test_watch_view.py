"""The live line of `openkb watch` on a terminal: "watching N paths · last
batch … · idle Ns", and a batch's progress while it syncs. From synthetic
events, then from a real watch in a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, markdown_doc, write_tree
from rich.console import Console

from openkb.cli.watch_view import WatchLiveView, WatchState


def _batch_start(n: int, touched: int) -> dict:
    return {"event": "watch_batch", "kind": "start", "phase": "watch", "batch": n,
            "paths": touched, "watched": 2}


def _batch_done(n: int, touched: int, **counts: int) -> dict:
    return {"event": "watch_batch", "kind": "done", "phase": "watch", "batch": n,
            "paths": touched, "watched": 2, "dur_ms": 420.0,
            "counts": {"added": 0, "updated": 0, "moved": 0, "removed": 0, "failed": 0}
            | counts}


def _sync_events(total: int, committed: int) -> list[dict]:
    """The batch's own sync, cut in its commit phase."""
    counts = {"total": total, "prepared": committed, "committed": committed, "skipped": 0,
              "failed": 0}
    return [{"event": "run", "kind": "start", "phase": "run"},
            {"event": "scan", "kind": "done", "phase": "scan"},
            {"event": "phase", "kind": "point", "phase": "commit", "counts": counts}]


def test_the_line_before_any_batch() -> None:
    state = WatchState(3)
    assert state.line(now=state.idle_since + 5) == "watching 3 paths · no batch yet · idle 0:05"


def test_a_batch_in_flight_shows_its_progress_then_becomes_the_last_batch() -> None:
    state = WatchState()
    for event in [_batch_start(1, 0), _batch_done(1, 0, added=3), _batch_start(2, 4),
                  *_sync_events(total=4, committed=1)]:
        state.fold(event)
    line = state.line()
    assert line.startswith("watching 2 paths · #2 (4 changed): commit 1/4 committed")
    assert "last batch #1 catch-up sync at " in line and ": 3 added in 0.4s" in line
    assert "idle" not in line  # not idle: a batch is running
    state.fold(_batch_done(2, 4, added=1, removed=2, moved=1))
    line = state.line(now=state.idle_since + 75)
    assert "#2 (4 changed) at " in line and "1 moved, 2 removed" in line
    assert line.endswith("idle 1:15")


def test_a_batch_that_changed_nothing_or_failed() -> None:
    state = WatchState()
    state.fold(_batch_start(1, 1))
    state.fold(_batch_done(1, 1))
    assert ": no change in 0.4s" in state.line()
    state.fold({"event": "watch_batch", "kind": "done", "batch": 1, "outcome": "error",
                "watched": 1, "error": "/notes does not exist: the watch is paused"})
    line = state.line()
    assert line.startswith("watching 1 path ·") and "the watch is paused" in line
    assert state.last_error == "/notes does not exist: the watch is paused"


def test_a_batch_stopped_by_a_full_disk_says_so() -> None:
    state = WatchState()
    state.fold(_batch_start(4, 9))
    state.fold(_batch_done(4, 9, added=2) | {
        "outcome": "disk_full", "error": "the disk is full (No space left on device): 2 "
        "document(s) committed before it filled up; free space and run the same command "
        "again"})
    line = state.line()
    assert "#4 (9 changed) at " in line and ": 2 added in 0.4s; the disk is full" in line
    assert state.last_error is not None and state.last_error.startswith("the disk is full")


def test_a_narrow_terminal_cuts_the_batches_not_the_idle_time() -> None:
    state = WatchState()
    state.fold(_batch_start(7, 12))
    state.fold(_batch_done(7, 12, added=3, updated=2, moved=1, removed=4))
    line = state.line(now=state.idle_since + 3, width=60)
    assert len(line) == 60
    assert line.startswith("watching 2 paths · last batch #7") and line.endswith("… · idle 0:03")
    assert state.line(width=200) == state.line()  # room enough: whole


def test_the_live_view_draws_the_line() -> None:
    console = Console(record=True, force_terminal=True, width=120)
    view = WatchLiveView(console, 2)
    for event in [_batch_start(1, 0), _batch_done(1, 0, added=2)]:
        view(event)
    view.close()  # draws the final frame
    text = console.export_text()
    assert "watching 2 paths · last batch #1 catch-up sync at " in text
    assert "2 added in 0.4s · idle 0:00" in text


# -- the real thing, in a pseudo-terminal --------------------------------------

@pytest.mark.heavy
def test_a_watch_on_a_terminal_shows_the_live_line(kb: Path, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "notes", {"apples.md": markdown_doc("Apples", "apples")})
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    clean = {k: v for k, v in os.environ.items()  # the terminal's size, not COLUMNS'
             if not k.startswith("OPENKB_") and k not in ("NO_COLOR", "TERM", "COLUMNS",
                                                          "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "openkb", "--kb", str(kb), "watch", "--jobs", "1",
         "--debounce", "0.2", str(folder)], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=follower,
        env={**clean, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)})
    os.close(follower)
    screen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                return
            if not data:
                return
            screen.append(data)

    reader = threading.Thread(target=drain)
    reader.start()

    def seen(text: str, timeout: float = 60) -> bool:
        """``text`` (a regular expression) drawn on the screen by now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(text, b"".join(screen).decode("utf-8", "replace")):
                return True
            time.sleep(0.1)
        return False

    try:
        assert seen("last batch #1 catch-up sync at "), b"".join(screen)
        assert seen("1 added in "), b"".join(screen)
        (folder / "pears.md").write_text(markdown_doc("Pears", "pears"))
        assert seen(r"last batch #2 \(\d+ changed\) at "), b"".join(screen)
        # Idle time moves without events (on a loaded machine a frame may be skipped).
        assert seen(r"watching 1 path · last batch #2 .* · idle 0:0[1-9]"), b"".join(screen)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        os.close(leader)
