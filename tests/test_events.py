"""Progress events, the JSONL file, `progress summarize`, and --debug timing."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import filelock
import pytest
from conftest import markdown_doc, run_openkb, write_tree

from openkb import api
from openkb.errors import UsageError
from openkb.progress import SCHEMA, Progress
from openkb.progress_jsonl import MAX_LINE, JsonlWriter

COMMIT_STEPS = ["journal", "snapshot", "publish", "index", "compile", "registry_write",
                "mark_committed"]
FIELDS = {"schema", "run_id", "seq", "ts_ms", "t_ms", "event", "phase", "kind", "pid",
          "worker", "rss_mib"}


def _docs(root: Path, n: int) -> Path:
    return write_tree(root, {f"note-{i:03d}.md": markdown_doc(f"Note {i}", f"topic {i % 5}")
                             for i in range(n)})


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_golden_event_sequence_of_a_small_add(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 2)
    progress = Progress()
    events: list[dict] = []
    progress.subscribe(events.append)
    api.add(str(kb), [str(docs)], progress, jobs=1)
    sequence = [(e["event"], e["kind"]) for e in events if e["kind"] != "progress"]
    per_file = [("hash", "start"), ("hash", "done"), ("prefilter", "point"),
                ("prepare", "start"), ("prepare", "done")]
    steps = [(step, kind) for step in COMMIT_STEPS for kind in ("start", "done")]
    assert sequence == [
        ("run", "start"), ("scan", "start"), ("scan", "done"), ("phase", "point"),
        *per_file, *per_file, ("phase", "point"),
        ("lock_wait", "start"), ("lock_wait", "done"), ("lock_acquired", "point"),
        ("commit", "start"), *steps, ("commit", "done"), ("committed", "point"),
        ("lock_released", "point"), ("complete", "terminal"),
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert set(event) >= FIELDS and event["schema"] == SCHEMA
        if event["kind"] == "done":
            assert event["dur_ms"] >= 0
    terminal = events[-1]
    assert terminal["counts"]["committed"] == 2 and terminal["exit_code"] == 0
    assert {"prepare", "commit", "publish"} <= set(terminal["phase_busy_ms"])
    assert terminal["max_rss_mib"] > 0


def test_jsonl_from_parallel_workers_is_whole_lines(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 40)
    jsonl = tmp_path / "p.jsonl"
    result = run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", "--jobs", "2",
                        str(docs))
    assert result.returncode == 0, result.stderr
    events = _read(jsonl)  # every line parses
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["kind"] for e in events].count("terminal") == 1
    prepares = [e for e in events if e["event"] == "prepare"]
    assert {e["worker"] for e in prepares} == {0, 1}
    main_pid = events[0]["pid"]
    assert all(e["pid"] != main_pid for e in prepares)
    assert all(len(line.encode()) < MAX_LINE for line in jsonl.read_text().splitlines())
    starts = {(e["event"], e.get("txid"), e.get("file")) for e in events if e["kind"] == "start"}
    dones = {(e["event"], e.get("txid"), e.get("file")) for e in events if e["kind"] == "done"}
    assert starts - {("run", None, None)} == dones  # the terminal event closes the run


def test_a_crashed_run_leaves_a_file_summarize_reads(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 5)
    jsonl = tmp_path / "p.jsonl"
    crashed = run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", str(docs),
                         env={"OPENKB_CRASH_AT": "compile.after"})
    assert crashed.returncode == -9
    summary = run_openkb("progress", "summarize", "--json", str(jsonl))
    assert summary.returncode == 0, summary.stderr
    data = json.loads(summary.stdout)
    assert data["terminal"] is None and "no terminal event" in data["notes"][0]


def test_a_torn_last_line_does_not_corrupt_the_next_run(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 3)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"schema": "openkb.progress.v1", "run_id": "old", "seq": 1, "ev')
    assert run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add",
                      str(docs)).returncode == 0
    lines = jsonl.read_text().splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
    assert all(json.loads(line)["run_id"] != "old" for line in lines[1:])
    summary = json.loads(run_openkb("progress", "summarize", "--json", str(jsonl)).stdout)
    assert summary["torn_lines"] == 1 and summary["terminal"]["event"] == "complete"


def test_an_unwritable_jsonl_path_warns_once_and_the_add_succeeds(kb: Path,
                                                                  tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 3)
    result = run_openkb("--kb", str(kb), "--progress-jsonl", str(tmp_path), "add", str(docs))
    assert result.returncode == 0
    assert result.stderr.count("cannot write progress events") == 1
    full = run_openkb("--kb", str(kb), "--progress-jsonl", "/dev/full", "add",
                      str(_docs(tmp_path / "e", 3)))
    assert full.returncode == 0 and full.stderr.count("No space left on device") == 1


def test_a_write_failure_mid_run_is_reported_once(tmp_path: Path) -> None:
    warnings: list[str] = []
    writer = JsonlWriter("/dev/full", warnings.append)
    for seq in range(50):
        writer({"schema": SCHEMA, "seq": seq})
    writer.close()
    assert len(warnings) == 1


@pytest.mark.parametrize(("argv", "event", "code"), [
    (["remove", "note-000"], "complete", 0),
    (["remove", "--dry-run", "note-000"], "complete", 0),
    (["remove", "no-such-note"], "error", 2),
    (["recompile"], "complete", 0),
    (["recover"], "complete", 0),
    (["verify"], "complete", 0),
    (["verify", "--repair"], "complete", 0),
    (["--lock-timeout", "0.3", "recompile"], "error", 3),
])
def test_every_command_that_takes_the_lock_is_one_run(kb: Path, tmp_path: Path,
                                                      argv: list[str], event: str,
                                                      code: int) -> None:
    assert run_openkb("--kb", str(kb), "add", str(_docs(tmp_path / "d", 2))).returncode == 0
    jsonl = tmp_path / "p.jsonl"
    lock = filelock.FileLock(kb / ".openkb" / "lock")
    if "--lock-timeout" in argv:
        lock.acquire()
    try:
        result = run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), *argv)
    finally:
        if lock.is_locked:
            lock.release()
    assert result.returncode == code, result.stderr
    events = _read(jsonl)
    command = next(a for a in argv if a[0].isalpha() and a != "0.3")
    assert (events[0]["event"], events[0]["kind"], events[0]["command"]) == (
        "run", "start", f"openkb {command}")
    assert [e["kind"] for e in events].count("terminal") == 1
    terminal = events[-1]
    assert (terminal["event"], terminal["kind"], terminal["exit_code"]) == (
        event, "terminal", code)
    assert terminal["wall_ms"] >= 0 and (terminal["error"] is None) == (code == 0)
    summary = json.loads(run_openkb("progress", "summarize", "--json", str(jsonl)).stdout)
    assert summary["terminal"]["event"] == event and not summary["notes"]


@pytest.mark.parametrize(("raised", "event", "code"), [
    (None, "complete", 0), (KeyboardInterrupt(), "cancelled", 130),
    (UsageError("bad"), "error", 2), (RuntimeError("bug"), "error", 1)])
def test_a_run_ends_with_one_terminal_event_however_its_body_ends(
        raised: BaseException | None, event: str, code: int) -> None:
    progress = Progress()
    events: list[dict] = []
    progress.subscribe(events.append)
    with contextlib.suppress(type(raised) if raised else ()), progress.run("openkb x") as run:
        run.fields["done"] = 7
        if raised is not None:
            raise raised
    assert [(e["event"], e["kind"]) for e in events] == [("run", "start"), (event, "terminal")]
    assert (events[-1]["exit_code"], events[-1]["done"]) == (code, 7)


@pytest.mark.heavy
def test_heartbeats_say_what_each_worker_is_doing(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 3)
    (docs / "slow.md").write_text("# Slow\n\n" + "- item\n" * 100_000)
    jsonl = tmp_path / "p.jsonl"
    result = run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", "--jobs", "2",
                        str(docs), env={"OPENKB_HEARTBEAT_S": "0.2"})
    assert result.returncode == 0, result.stderr
    beats = [e for e in _read(jsonl) if e["event"] == "heartbeat"]
    assert beats, "no heartbeat in a run of several seconds"
    assert any(w["file"].endswith("slow.md") for b in beats for w in b["workers"])
    assert all("since_progress_s" in b and "counts" in b for b in beats)


def test_summarize_reports_phases_and_writes_a_chrome_trace(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 6)
    (docs / "bad.pdf").write_bytes(b"garbage")
    jsonl = tmp_path / "p.jsonl"
    run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", str(docs))
    run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", str(docs))
    text = run_openkb("progress", "summarize", str(jsonl), "--chrome-trace",
                      str(tmp_path / "trace.json"))
    assert text.returncode == 0, text.stderr
    assert "time per phase" in text.stdout and "lock wait" in text.stdout
    data = json.loads(run_openkb("progress", "summarize", "--json", str(jsonl)).stdout)
    assert len(data["runs_in_file"]) == 2
    first = json.loads(run_openkb("progress", "summarize", "--json", "--run",
                                  data["runs_in_file"][0], str(jsonl)).stdout)
    phases = {p["phase"]: p for p in first["phases"]}
    assert phases["prepare"]["count"] == 7 and phases["commit"]["count"] >= 1
    assert first["failed_files"][0]["file"].endswith("bad.pdf")
    assert first["terminal"]["counts"]["committed"] == 6
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert any(t["ph"] == "X" for t in trace["traceEvents"])
    bad = run_openkb("progress", "summarize", "--run", "nope", str(jsonl))
    assert bad.returncode == 2


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_one_timing_line_per_document(kb: Path, tmp_path: Path, how: str) -> None:
    docs = _docs(tmp_path / "d", 3)
    args = ["--debug"] if how == "flag" else []
    env = {"OPENKB_LOG": "debug"} if how == "env" else {}
    result = run_openkb("--kb", str(kb), *args, "add", str(docs), env=env)
    lines = [line for line in result.stderr.splitlines() if "openkb.timing" in line]
    assert len(lines) == 3
    for key in ("lock_wait=", "prefilter=", "prepare=", *[f"{s}=" for s in COMMIT_STEPS],
                "commit="):
        assert all(key in line for line in lines), key
    quiet = run_openkb("--kb", str(kb), "add", str(_docs(tmp_path / "e", 2)))
    assert "openkb.timing" not in quiet.stderr


def test_telemetry_is_silent_when_unset(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 2)
    env = {k: v for k, v in os.environ.items() if k != "OPENKB_PROGRESS_JSONL"}
    result = run_openkb("--kb", str(kb), "--quiet", "add", str(docs), env=env)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == ""
    assert not list(tmp_path.glob("*.jsonl"))
