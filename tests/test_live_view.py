"""What a user sees during a long add: the live view on a terminal, plain
status lines elsewhere, and `openkb status` naming a running ingest."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
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

from openkb.cli.live import LiveView, PlainReporter, RunState

COUNTS0 = {"total": 3, "prepared": 0, "committed": 0, "skipped": 1, "failed": 0}


def _scan(found: int = 3) -> list[dict]:
    return [
        {"event": "run", "kind": "start", "phase": "run"},
        {"event": "scan", "kind": "start", "phase": "scan"},
        {"event": "scan", "kind": "progress", "phase": "scan", "counts": {"total": found}},
    ]


def _events() -> list[dict]:
    """A synthetic run, cut in the middle of its first commit; one file was
    skipped by the scan (so it is not among the total's 3)."""
    return [
        *_scan(),
        {"event": "scan", "kind": "done", "phase": "scan"},
        {"event": "phase", "kind": "point", "phase": "prepare", "counts": COUNTS0},
        {"event": "hashing", "kind": "point", "phase": "prefilter", "file": "docs/a.md"},
        {"event": "prefilter", "kind": "point", "phase": "prefilter", "file": "docs/a.md",
         "bytes": 20_000_000, "hash_ms": 40.0},
        {"event": "prepare", "kind": "start", "worker": 0, "file": "docs/a.md"},
        {"event": "prepare", "kind": "start", "worker": 1, "file": "docs/b\nc.pdf"},
        {"event": "prepare", "kind": "done", "worker": 0, "file": "docs/a.md"},
        {"event": "phase", "kind": "point", "phase": "commit", "counts": COUNTS0},
        {"event": "lock_wait", "kind": "start", "phase": "lock_wait"},
        {"event": "lock_wait", "kind": "done", "phase": "lock_wait"},
        {"event": "lock_acquired", "kind": "point", "phase": "lock"},
        {"event": "commit", "kind": "start", "phase": "commit", "doc": ["a", "b", "c"]},
        {"event": "journal", "kind": "start", "phase": "journal"},
        {"event": "journal", "kind": "done", "phase": "journal"},
        {"event": "publish", "kind": "start", "phase": "publish"},
    ]


def _committed(n: int, total: int = 3) -> dict:
    return {"event": "committed", "kind": "point", "phase": "commit",
            "counts": {"total": total, "prepared": n, "committed": n, "skipped": 1,
                       "failed": 0}}


def _terminal() -> dict:
    return {"event": "complete", "kind": "terminal", "phase": "run",
            "counts": {"total": 3, "prepared": 3, "committed": 3, "skipped": 1, "failed": 0}}


# -- RunState -----------------------------------------------------------------

def test_run_state_follows_the_events() -> None:
    state = RunState()
    changes = [state.fold(e) for e in _events()]
    assert changes.count(True) == 2  # scan -> prepare -> commit
    assert state.phase == "commit" and not state.scanning
    assert state.counts["prepared"] == 1 and state.counts["total"] == 3
    assert state.preparing == {1: "docs/b\nc.pdf"} and state.hashing == ""
    assert state.committing == "a (+2 more)" and state.commit_step == "publish"
    assert state.waiting_for is None and state.waiting_since is None
    assert state.remaining() == 3  # the scan's own skip is not among the 3

    assert state.fold(_terminal())
    assert state.phase == "complete" and state.remaining() == 0
    assert (state.preparing, state.committing, state.commit_step) == ({}, "", "")


def test_worker_events_keep_the_prepared_count_ahead() -> None:
    """Workers report a file done before the main process collects it, so a
    main-process count may lag; the view never goes backwards."""
    state = RunState()
    for event in _events():
        state.fold(event)
    state.fold({"event": "prepare", "kind": "done", "worker": 1, "file": "docs/b\nc.pdf"})
    state.fold(_committed(1) | {"counts": {**COUNTS0, "prepared": 1, "committed": 1}})
    assert state.counts["prepared"] == 2 and state.counts["committed"] == 1


def test_a_pdf_read_in_parts_is_one_prepared_file() -> None:
    state = RunState()
    for event in _scan(1):
        state.fold(event)
    pdf = {"event": "prepare", "file": "long.pdf"}
    state.fold(pdf | {"kind": "start", "worker": 0, "part": "1/2"})
    state.fold(pdf | {"kind": "start", "worker": 1, "part": "2/2"})
    assert state.preparing == {0: "long.pdf (part 1/2)", 1: "long.pdf (part 2/2)"}
    state.fold(pdf | {"kind": "done", "worker": 0, "part": "1/2"})
    state.fold(pdf | {"kind": "done", "worker": 1, "part": "2/2"})
    assert state.counts.get("prepared", 0) == 0
    state.fold(pdf | {"kind": "start", "worker": 1, "part": "assemble"})
    state.fold(pdf | {"kind": "done", "worker": 1, "part": "assemble"})
    assert state.counts["prepared"] == 1 and state.preparing == {}


def test_scan_progress_counts_the_total_while_scanning() -> None:
    state = RunState()
    for event in _scan(found=2000):
        assert not state.fold(event)
    assert state.scanning and state.counts["total"] == 2000
    assert state.rate_and_eta()[1] is None  # no ETA while the total still grows


def test_rate_and_eta_come_from_recent_commits() -> None:
    state = RunState()
    for event in [*_events(), _committed(2, total=3)]:
        state.fold(event)
    rate, eta = state.rate_and_eta(now=state.started + 4)
    assert rate == pytest.approx(0.5, rel=0.01)  # 2 documents in 4 s
    assert eta == pytest.approx(2.0, rel=0.01)  # 1 left
    state.waiting_for = "openkb add (pid 42, 3s)"
    assert state.rate_and_eta(now=state.started + 4)[1] is None  # blocked: no ETA
    state.waiting_for = None
    # Long after the last commit the rate is measured over the recent
    # window only, so a stall shows as a rate of 0 and no ETA.
    assert state.rate_and_eta(now=state.started + 100) == (0.0, None)


def test_lock_wait_events_mark_the_wait() -> None:
    state = RunState()
    state.fold({"event": "lock_wait", "kind": "start", "phase": "lock_wait"})
    assert state.waiting_since is not None
    state.waiting_for = "openkb add (pid 42, 3s)"  # what the lock poll reports
    state.fold({"event": "lock_wait", "kind": "done", "phase": "lock_wait",
                "outcome": "timeout"})
    assert state.waiting_since is None and state.waiting_for is None


# -- PlainReporter --------------------------------------------------------------

def _plain(every_s: float = 3600) -> tuple[PlainReporter, Console]:
    console = Console(record=True, width=200)
    return PlainReporter(console, every_s=every_s), console


def test_plain_lines_come_at_each_phase_change() -> None:
    reporter, console = _plain()
    for event in [*_events(), _committed(3), _terminal()]:
        reporter(event)
    reporter.close()
    lines = console.export_text().splitlines()
    assert len(lines) == 3  # prepare, commit, complete
    assert re.fullmatch(r"openkb \[0:00\]: prepare: 0/3 committed, 0 prepared, 1 skipped, "
                        r"0 failed \(0\.0 docs/s\)", lines[0]), lines[0]
    assert lines[1].startswith("openkb [0:00]: commit: 0/3 committed, 1 prepared, 1 skipped")
    assert lines[2].startswith("openkb [0:00]: complete: 3/3 committed, 3 prepared")


def test_plain_lines_come_every_interval_without_events() -> None:
    """A long conversion or lock wait emits nothing; the line still comes."""
    reporter, console = _plain(every_s=0.2)
    for event in _scan(found=2000):
        reporter(event)
    deadline = time.monotonic() + 10
    while len(console.export_text(clear=False).splitlines()) < 2 and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    for event in _events()[3:11]:  # on to the commit phase, then a lock wait begins
        reporter(event)
    reporter({"event": "lock_wait", "kind": "start", "phase": "lock_wait"})
    reporter.lock_wait("openkb add (pid 42, 3s)\x1b[2J", 1.0)
    deadline = time.monotonic() + 10
    while "waiting for the lock" not in console.export_text(clear=False) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    reporter.close()
    lines = console.export_text().splitlines()
    assert all(re.fullmatch(r"openkb \[0:0\d\]: scanning: 2000 files found", line)
               for line in lines[:2]), lines
    assert "openkb: waiting for lock held by openkb add (pid 42, 3s)\\x1b[2J" in lines
    assert any(re.search(r"^openkb \[.*\]: commit: .*, waiting for the lock \ds$", line)
               for line in lines), lines


class _BrokenPipe:
    """A stderr whose reader went away."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_plain_reporter_goes_quiet_when_its_output_is_gone() -> None:
    broken = _BrokenPipe()
    stdout_fd_target = os.readlink(f"/proc/self/fd/{sys.__stdout__.fileno()}")
    reporter = PlainReporter(Console(file=broken), every_s=3600)
    for event in [*_events(), _committed(3), _terminal()]:
        reporter(event)  # never raises
    reporter.close()
    assert broken.writes == 1  # it stopped after the first failure
    # rich's own answer to a broken pipe would point stdout at /dev/null.
    assert os.readlink(f"/proc/self/fd/{sys.__stdout__.fileno()}") == stdout_fd_target


# -- LiveView -------------------------------------------------------------------

def _live(events: list[dict], lock_holder: str | None = None, width: int = 100) -> str:
    console = Console(record=True, force_terminal=True, width=width)
    view = LiveView(console)
    for event in events:
        view(event)
    if lock_holder:
        view.lock_wait(lock_holder, 130.0)
    view.close()  # draws the final frame
    text = console.export_text()
    # Only the final frame: the record also holds the earlier refreshes.
    return text[text.rfind("prepared "):]


def test_live_view_shows_counts_files_and_lock_waits() -> None:
    text = _live(_events(), lock_holder="openkb add (pid 42, 2m10s)")
    lines = text.splitlines()
    assert re.search(r"prepared .* 1/3", lines[0]) and re.search(r"committed .* 0/3", lines[1])
    assert "prepare (worker 1): docs/b\\nc.pdf" in text  # a newline in a name, escaped
    assert "commit [publish]: a (+2 more)" in text
    assert "waiting for lock held by openkb add (pid 42, 2m10s), waited 2:10" in text
    assert "commit · 0.0 docs/s · ETA - · skipped 1 · failed 0" in text


def test_live_view_spins_while_the_scan_counts() -> None:
    text = _live(_scan(found=2000))
    assert "0/?" in text and "scan: 2000 files found" in text


def test_live_view_shows_the_end_of_a_long_path() -> None:
    deep = "/".join(["folder"] * 40) + "/the-file-that-matters.md"
    text = _live([*_events()[:5], {"event": "prepare", "kind": "start", "worker": 0,
                                   "file": deep}], width=100)
    line = next(line for line in text.splitlines() if line.startswith("prepare (worker 0)"))
    assert line.endswith("/the-file-that-matters.md") and "…" in line
    assert all(len(line) <= 100 for line in text.splitlines())


def test_live_view_final_frame_after_the_run() -> None:
    text = _live([*_events(), _committed(3), {"event": "commit", "kind": "done"}, _terminal()])
    assert re.search(r"committed .* 3/3", text)
    assert "complete ·" in text and "ETA" not in text and "worker" not in text


def test_the_committed_bar_fills_when_some_files_failed() -> None:
    """Failed files never commit: the bar counts what can be, so a finished
    run with failures shows a full bar, not one stuck short of the total."""
    ended = {"counts": {"total": 3, "prepared": 3, "committed": 2, "skipped": 1, "failed": 1}}
    text = _live([*_events(), _committed(2) | ended, _terminal() | ended])
    assert re.search(r"committed .* 2/2", text) and re.search(r"prepared .* 3/3", text)


# -- the real thing, in a pseudo-terminal --------------------------------------

def _run_on_a_tty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run openkb with stderr on a 100x30 pseudo-terminal; return its exit
    code and everything it drew there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("OPENKB_") and k not in ("NO_COLOR", "TERM")}
    proc = subprocess.Popen([sys.executable, "-m", "openkb", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=follower,
                            env={**clean, "TERM": "xterm-256color", **env,
                                 "PYTHONPATH": str(ROOT)})
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:  # the child blocks if nobody reads the terminal
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        code = proc.wait(timeout=120)
    finally:
        reader.join(timeout=10)
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


COLOR = re.compile(r"\x1b\[(?:3|9)\d")  # a foreground colour


def _many(tmp_path: Path, n: int) -> Path:
    return write_tree(tmp_path / "d", {f"n{i:03d}.md": markdown_doc(f"N {i}", "apples")
                                       for i in range(n)})


def test_a_terminal_gets_the_live_view(kb: Path, tmp_path: Path) -> None:
    code, screen = _run_on_a_tty(["--kb", str(kb), "add", "--jobs", "2",
                                  str(_many(tmp_path, 30))], {})
    assert code == 0
    assert "prepared" in screen and "30/30" in screen and "complete ·" in screen
    assert COLOR.search(screen)
    assert "openkb [" not in screen  # not the plain lines


def test_no_color_on_a_terminal(kb: Path, tmp_path: Path) -> None:
    code, screen = _run_on_a_tty(["--kb", str(kb), "add", str(_many(tmp_path, 5))],
                                 {"NO_COLOR": "1"})
    assert code == 0 and "5/5" in screen
    assert not COLOR.search(screen)


def test_quiet_on_a_terminal_draws_nothing(kb: Path, tmp_path: Path) -> None:
    code, screen = _run_on_a_tty(["--kb", str(kb), "--quiet", "add", str(_many(tmp_path, 5))],
                                 {})
    assert (code, screen) == (0, "")


def test_not_a_terminal_gets_plain_lines(cli, kb: Path, tmp_path: Path) -> None:
    result = cli("--kb", str(kb), "add", str(_many(tmp_path, 5)))
    assert result.code == 0
    assert "\x1b[" not in result.err
    phases = [line.split(": ")[1] for line in result.err.splitlines()
              if line.startswith("openkb [")]
    assert phases == ["prepare", "commit", "complete"]


# -- openkb status ------------------------------------------------------------------

def test_status_names_a_running_ingest(cli, kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "d", {"a.md": markdown_doc("A", "apples"),
                                       "slow.md": "# Slow\n\n" + "- item\n" * 50_000})
    proc = subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", "add",
                             "--jobs", "2", str(docs)], env={**os.environ,
                                                             "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        running: list = []
        while not running:
            assert proc.poll() is None, "the add ended before status saw it running"
            assert time.monotonic() < deadline, "status did not see the add within 30 s"
            running = json.loads(cli("--kb", str(kb), "status", "--json").out)["running"]
            time.sleep(0.05)
        assert running[0]["pid"] == proc.pid
        assert running[0]["command"] == "openkb add"
        text = cli("--kb", str(kb), "status").out
        assert f"running: openkb add (pid {proc.pid})" in text
    finally:
        proc.wait(timeout=120)
    assert json.loads(cli("--kb", str(kb), "status", "--json").out)["running"] == []
