"""What a user sees during a long add: the live view, plain status lines, and
`openkb status` naming a running ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, markdown_doc, run_openkb, write_tree
from rich.console import Console

from openkb.cli.live import LiveView, PlainReporter, RunState


def _events() -> list[dict]:
    return [
        {"event": "run", "kind": "start"},
        {"event": "scan", "kind": "start"},
        {"event": "scan", "kind": "done"},
        {"event": "phase", "kind": "point", "phase": "prepare",
         "counts": {"total": 3, "prepared": 0, "committed": 0, "skipped": 1, "failed": 0}},
        {"event": "prepare", "kind": "start", "worker": 0, "file": "docs/a.md"},
        {"event": "prepare", "kind": "start", "worker": 1, "file": "docs/b\nc.pdf"},
        {"event": "prepare", "kind": "done", "worker": 0, "file": "docs/a.md"},
        {"event": "phase", "kind": "point", "phase": "commit"},
        {"event": "commit", "kind": "start", "doc": ["a"]},
    ]


def test_run_state_follows_the_events() -> None:
    state = RunState()
    changes = [state.fold(e) for e in _events()]
    assert changes.count(True) == 2  # prepare, then commit
    assert state.counts["prepared"] == 1 and state.counts["total"] == 3
    assert state.preparing == {1: "docs/b\nc.pdf"}
    assert state.committing == "a" and not state.scanning


def test_plain_lines_come_at_phase_changes() -> None:
    console = Console(record=True, width=200)
    reporter = PlainReporter(console)
    for event in _events():
        reporter(event)
    lines = console.export_text().splitlines()
    assert len(lines) == 3  # the first event, then one per phase change
    assert lines[-1].startswith("openkb: commit: 0/3 committed, 1 prepared, 1 skipped")


def test_live_view_shows_counts_files_and_lock_waits() -> None:
    console = Console(record=True, force_terminal=True, width=100)
    view = LiveView(console)
    for event in _events():
        view(event)
    view.lock_wait("openkb add (pid 42, 3s)", 2.0)
    view.close()
    text = console.export_text()
    assert "1/3" in text and "prepared" in text and "committed" in text
    assert "prepare (worker 1): docs/b\\nc.pdf" in text  # a newline in a name, escaped
    assert "waiting for lock held by openkb add (pid 42, 3s)" in text


def test_status_names_a_running_ingest(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "d", {"a.md": markdown_doc("A", "apples"),
                                       "slow.md": "# Slow\n\n" + "- item\n" * 400_000})
    proc = subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", "add",
                             "--jobs", "2", str(docs)], env={**os.environ,
                                                             "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        running: list = []
        while not running and time.monotonic() < deadline:
            time.sleep(0.2)
            running = json.loads(run_openkb("--kb", str(kb), "status", "--json").stdout)[
                "running"]
        assert running and running[0]["pid"] == proc.pid
        assert running[0]["command"] == "openkb add"
        text = run_openkb("--kb", str(kb), "status").stdout
        assert f"running: openkb add (pid {proc.pid})" in text
    finally:
        proc.wait(timeout=120)
    assert json.loads(run_openkb("--kb", str(kb), "status", "--json").stdout)["running"] == []
