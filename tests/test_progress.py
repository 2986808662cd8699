"""The progress event stream, its JSONL file, `openkb progress summarize`, and
the --debug timing lines: what an operator reads to find where a run's time
went, during the run and after a crash."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import pytest
from conftest import ROOT, Run, markdown_doc, openkb_in_process, run_openkb, write_tree

from openkb import api
from openkb.errors import UsageError
from openkb.layout import KBLayout
from openkb.lock import KBLock
from openkb.progress import SCHEMA, Progress
from openkb.progress_jsonl import MAX_LINE, JsonlWriter, encode_line

COMMIT_STEPS = ["journal", "snapshot", "publish", "index", "compile", "registry_write",
                "mark_committed"]
FIELDS = {"schema", "run_id", "seq", "ts_ms", "t_ms", "event", "phase", "kind", "pid",
          "worker", "rss_mib"}
TIMING_KEYS = ["lock_wait=", "prefilter=", "prepare=", *[f"{s}=" for s in COMMIT_STEPS],
               "commit="]


def _docs(root: Path, n: int, prefix: str = "note") -> Path:
    return write_tree(root, {f"{prefix}-{i:03d}.md": markdown_doc(f"{prefix} {i}",
                                                                  f"topic {i % 5}")
                             for i in range(n)})


def _read(path: Path) -> list[dict]:
    """Every line must be one whole JSON object: a torn or interleaved line fails here."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _real(*args: str, env: dict[str, str] | None = None) -> Run:
    """openkb as a real process, for what an in-process run cannot show:
    a crash point, a heartbeat interval, a lock held by this process."""
    done = run_openkb(*args, env=env)
    return Run(done.returncode, done.stdout, done.stderr)


def _add(run, kb: Path, jsonl: Path, *args: str, **kwargs) -> Run:  # type: ignore[no-untyped-def]
    return run("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", *args, **kwargs)


def _summary(jsonl: Path, *args: str) -> dict:
    result = openkb_in_process("progress", "summarize", "--json", *args, str(jsonl))
    assert result.code == 0, result.err
    return json.loads(result.out)


def _assert_well_formed(events: list[dict]) -> None:
    """Schema fields on every record, seq 1..n, one terminal event, last."""
    for event in events:
        assert set(event) >= FIELDS, event
        assert event["schema"] == SCHEMA and event["run_id"] == events[0]["run_id"]
        if event["kind"] == "done":
            assert event["dur_ms"] >= 0, event
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["kind"] for e in events].count("terminal") == 1
    assert events[-1]["kind"] == "terminal"


def _commit_steps_pair_up(events: list[dict]) -> None:
    """Each commit step of each transaction: a start, then a done with dur_ms."""
    txids = {e["txid"] for e in events if e["event"] == "commit" and e["kind"] == "start"}
    assert txids
    for txid in txids:
        steps = [(e["event"], e["kind"]) for e in events
                 if e.get("txid") == txid and e["event"] in COMMIT_STEPS]
        assert steps == [(s, k) for s in COMMIT_STEPS for k in ("start", "done")], txid
        dones = [e for e in events if e.get("txid") == txid and e["kind"] == "done"]
        assert all(isinstance(e["dur_ms"], float | int) and e["outcome"] == "ok"
                   for e in dones)


# -- the event stream ---------------------------------------------------------

def test_golden_event_sequence_of_a_small_add(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 2)
    progress = Progress()
    events: list[dict] = []
    progress.subscribe(events.append)
    report = api.add(str(kb), [str(docs)], progress, jobs=1)
    assert report.exit_code == 0
    # v2: the hash is timed on the prefilter event, not a span of its own.
    per_file = [("prefilter", "point"), ("prepare", "start"), ("prepare", "done")]
    steps = [(step, kind) for step in COMMIT_STEPS for kind in ("start", "done")]
    assert [(e["event"], e["kind"]) for e in events] == [
        ("run", "start"), ("scan", "start"), ("scan", "progress"), ("scan", "done"),
        ("phase", "point"), *per_file, *per_file, ("phase", "point"),
        ("lock_wait", "start"), ("lock_wait", "done"), ("lock_acquired", "point"),
        ("commit", "start"), *steps, ("commit", "done"), ("committed", "point"),
        ("lock_released", "point"), ("complete", "terminal"),
    ]
    _assert_well_formed(events)
    _commit_steps_pair_up(events)
    prefiltered = [e for e in events if e["event"] == "prefilter"]
    assert all(e["bytes"] > 0 and e["hash_ms"] >= 0 for e in prefiltered)
    # In one process the run's clock only moves forward.
    assert [e["t_ms"] for e in events] == sorted(e["t_ms"] for e in events)
    terminal = events[-1]
    assert terminal["counts"] == {"total": 2, "prepared": 2, "committed": 2, "skipped": 0,
                                  "failed": 0}
    assert terminal["exit_code"] == 0 and terminal["bytes"] > 0
    assert {"prepare", "commit", "publish", "lock_wait"} <= set(terminal["phase_busy_ms"])
    assert terminal["max_rss_mib"] > 0


def test_a_failing_step_still_closes_its_span(tmp_path: Path) -> None:
    progress = Progress()
    events: list[dict] = []
    progress.subscribe(events.append)
    with pytest.raises(ValueError), progress.span("publish", txid="t1", doc="a") as extra:
        extra["doc"] = "b"  # the body may correct a field of the start event
        raise ValueError("disk on fire")
    start, done = events
    assert (start["kind"], done["kind"]) == ("start", "done")
    assert done["outcome"] == "error" and done["error"] == "ValueError: disk on fire"
    assert done["doc"] == "b" and done["txid"] == "t1" and done["dur_ms"] >= 0
    assert progress.phase_count["publish"] == 1


@pytest.mark.parametrize("failure", [OSError(32, "Broken pipe"), SystemExit(1)])
def test_a_failing_listener_never_fails_the_ingest(kb: Path, tmp_path: Path,
                                                   failure: BaseException) -> None:
    """A view that cannot print (rich raises SystemExit on a broken pipe)
    is dropped; it must not roll back the commit it was told about."""
    docs = _docs(tmp_path / "d", 3)
    progress = Progress()
    events: list[dict] = []

    def broken_view(record: dict) -> None:
        if record["event"] == "publish":
            raise failure

    progress.subscribe(broken_view)
    progress.subscribe(events.append)
    report = api.add(str(kb), [str(docs)], progress, jobs=1)
    assert report.exit_code == 0 and len(report.added) == 3
    assert events[-1]["event"] == "complete"
    assert len(api.list_documents(str(kb), Progress())) == 3


def test_a_closed_stderr_does_not_fail_the_add(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 20)
    read_end, write_end = os.pipe()
    os.close(read_end)  # stderr is a pipe nobody reads: every write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "openkb", "--kb", str(kb), "add", "--jobs", "1", str(docs)],
            stdout=subprocess.PIPE, stderr=write_end, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    assert result.returncode == 0
    assert "added 20" in result.stdout  # and stdout was not silenced on the way
    assert len(api.list_documents(str(kb), Progress())) == 20


# -- the JSONL file -----------------------------------------------------------

def test_parallel_workers_write_whole_lines_through_one_writer(cli, kb: Path,
                                                               tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 40)
    jsonl = tmp_path / "p.jsonl"
    result = _add(cli, kb, jsonl, "--jobs", "2", str(docs))
    assert result.code == 0, result.err
    raw = jsonl.read_bytes()
    assert raw.endswith(b"\n") and all(len(line) + 1 < MAX_LINE for line in raw.splitlines())
    events = _read(jsonl)
    _assert_well_formed(events)
    _commit_steps_pair_up(events)
    main_pid = events[0]["pid"]
    prepares = [e for e in events if e["event"] == "prepare"]
    assert {e["worker"] for e in prepares} == {0, 1}
    assert all(e["pid"] != main_pid for e in prepares)
    assert all(e["worker"] is None and e["pid"] == main_pid
               for e in events if e["event"] != "prepare")
    files = {str(p) for p in docs.iterdir()}  # named as the user named them
    for kind in ("start", "done"):
        assert sorted(e["file"] for e in prepares if e["kind"] == kind) == sorted(files)
    # Every span that started was closed; the terminal event closes the run.
    starts = {(e["event"], e.get("txid"), e.get("file")) for e in events if e["kind"] == "start"}
    dones = {(e["event"], e.get("txid"), e.get("file")) for e in events if e["kind"] == "done"}
    assert starts - {("run", None, None)} == dones
    assert events[-1]["counts"]["committed"] == 40


def test_a_crash_mid_run_leaves_a_file_summarize_reads(cli, kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 5)
    jsonl = tmp_path / "p.jsonl"
    crashed = _add(_real, kb, jsonl, "--jobs", "1", str(docs),
                   env={"OPENKB_CRASH_AT": "publish.after"})
    assert crashed.code == -signal.SIGKILL
    events = _read(jsonl)
    assert not [e for e in events if e["kind"] == "terminal"]
    # Events queued in the last instant die with the process; these came
    # well before the kill.
    assert any(e["event"] == "commit" and e["kind"] == "start" for e in events)
    data = _summary(jsonl)
    assert data["terminal"] is None and "no terminal event" in data["notes"][0]
    assert {"prefilter", "prepare", "lock_wait"} <= {p["phase"] for p in data["phases"]}
    text = cli("progress", "summarize", str(jsonl))
    assert text.code == 0 and "unfinished" in text.out
    assert "no terminal event" in text.out


def test_a_torn_last_line_does_not_corrupt_the_next_record(cli, kb: Path,
                                                           tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 3)
    jsonl = tmp_path / "p.jsonl"
    torn = b'{"schema": "openkb.progress.v1", "run_id": "old", "seq": 7, "ev'
    jsonl.write_bytes(torn)  # what a SIGKILL in the middle of a write leaves
    assert _add(cli, kb, jsonl, str(docs)).code == 0
    lines = jsonl.read_bytes().splitlines()
    assert lines[0] == torn
    events = [json.loads(line) for line in lines[1:]]  # the next record starts clean
    _assert_well_formed(events)
    data = _summary(jsonl)
    assert data["torn_lines"] == 1 and data["runs_in_file"] == [events[0]["run_id"]]
    assert data["terminal"]["event"] == "complete"


def test_the_writer_appends_after_a_torn_line_and_keeps_lines_short(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"torn": ')
    writer = JsonlWriter(str(path), warn=pytest.fail)
    writer({"schema": SCHEMA, "seq": 1, "error": "x" * 100_000, "doc": ["n" * 200] * 50,
            7: "a non-string key"})
    writer.close()
    torn, line = path.read_bytes().split(b"\n")[:2]
    assert torn == b'{"torn": '
    record = json.loads(line)
    assert record["seq"] == 1 and record["trimmed"] is True and len(line) < MAX_LINE
    assert len(encode_line({"schema": SCHEMA, "file": "é" * 5000})) < MAX_LINE


def test_a_write_failure_mid_run_is_reported_once(tmp_path: Path) -> None:
    warnings: list[str] = []
    writer = JsonlWriter("/dev/full", warnings.append)
    for seq in range(50):
        writer({"schema": SCHEMA, "seq": seq})
    writer.close()
    assert len(warnings) == 1


@pytest.mark.parametrize(("target", "why"), [("directory", "Is a directory"),
                                             ("/proc/version", "Input/output error"),
                                             ("/dev/full", "No space left on device")])
def test_an_unwritable_jsonl_path_warns_once_and_the_add_succeeds(cli, kb: Path, tmp_path: Path,
                                                                  target: str, why: str) -> None:
    """A directory fails at open; /proc/version (EIO) and /dev/full (ENOSPC)
    open fine and fail at the first write, mid-run."""
    docs = _docs(tmp_path / "d", 4)
    path = str(tmp_path) if target == "directory" else target
    result = cli("--kb", str(kb), "--progress-jsonl", path, "add", str(docs))
    assert result.code == 0, result.err
    assert result.err.count("cannot write progress events") == 1, result.err
    assert why in result.err
    assert "added 4" in result.out
    assert len(api.list_documents(str(kb), Progress())) == 4


def test_the_environment_variable_names_the_file_too(cli, kb: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "env.jsonl"
    result = cli("--kb", str(kb), "--quiet", "add", str(_docs(tmp_path / "d", 2)),
                 env={"OPENKB_PROGRESS_JSONL": str(jsonl)})
    assert result.code == 0
    assert _read(jsonl)[-1]["event"] == "complete"


def test_telemetry_is_silent_when_unset(cli, kb: Path, tmp_path: Path) -> None:
    result = cli("--kb", str(kb), "--quiet", "add", str(_docs(tmp_path / "d", 2)),
                 cwd=tmp_path)
    assert (result.code, result.out, result.err) == (0, "", "")
    assert not list(tmp_path.rglob("*.jsonl"))


# -- exactly one terminal event -----------------------------------------------

@pytest.mark.parametrize(("setup", "event", "code"), [
    ("ok", "complete", 0), ("bad-file", "complete", 1), ("locked", "error", 3)])
def test_every_run_ends_with_one_terminal_event(cli, kb: Path, tmp_path: Path, setup: str,
                                                event: str, code: int) -> None:
    docs = _docs(tmp_path / "d", 3)
    if setup == "bad-file":
        (docs / "bad.pdf").write_bytes(b"garbage, not a PDF")
    jsonl = tmp_path / "p.jsonl"
    lock = KBLock(KBLayout.at(kb), "openkb add")
    if setup == "locked":
        lock.acquire()  # held by this process: the add must be another one
    try:
        result = (_real if setup == "locked" else cli)(
            "--kb", str(kb), "--progress-jsonl", str(jsonl), "--lock-timeout", "0.5", "add",
            str(docs))
    finally:
        if lock.held:
            lock.release()
    assert result.code == code, result.err
    events = _read(jsonl)
    _assert_well_formed(events)
    terminal = events[-1]
    assert (terminal["event"], terminal["exit_code"]) == (event, code)
    assert {"counts", "bytes", "phase_busy_ms", "max_rss_mib", "wall_ms"} <= set(terminal)
    if setup == "bad-file":
        assert terminal["counts"]["failed"] == 1 and terminal["counts"]["committed"] == 3
        assert any(e["event"] == "file_error" and e["file"].endswith("bad.pdf")
                   for e in events)
    if setup == "locked":
        assert f"openkb add (pid {os.getpid()}" in result.err
        assert "LockTimeout" in terminal["error"]
        wait = [e for e in events if e["event"] == "lock_wait" and e["kind"] == "done"]
        assert wait[-1]["outcome"] == "timeout" and wait[-1]["dur_ms"] >= 500


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
def test_every_command_that_takes_the_lock_is_one_run(cli, kb: Path, tmp_path: Path,
                                                      argv: list[str], event: str,
                                                      code: int) -> None:
    assert not api.add(str(kb), [str(_docs(tmp_path / "d", 2))], Progress(), jobs=1).failed
    jsonl = tmp_path / "p.jsonl"
    locked = "--lock-timeout" in argv
    lock = filelock.FileLock(kb / ".openkb" / "lock")
    if locked:
        lock.acquire()  # held by this process: the command must be another one
    try:
        result = (_real if locked else cli)("--kb", str(kb), "--progress-jsonl", str(jsonl),
                                            *argv)
    finally:
        if lock.is_locked:
            lock.release()
    assert result.code == code, result.err
    events = _read(jsonl)
    _assert_well_formed(events)
    command = next(a for a in argv if a[0].isalpha() and a != "0.3")
    assert (events[0]["event"], events[0]["kind"], events[0]["command"]) == (
        "run", "start", f"openkb {command}")
    terminal = events[-1]
    assert (terminal["event"], terminal["kind"], terminal["exit_code"]) == (
        event, "terminal", code)
    assert terminal["wall_ms"] >= 0 and (terminal["error"] is None) == (code == 0)
    summary = _summary(jsonl)
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


def _wait_for_event(jsonl: Path, event: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    needle = f'"event":"{event}"'.encode()
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists() and needle in jsonl.read_bytes():
            return
        time.sleep(0.02)
    pytest.fail(f"no {event} event within {timeout}s (exit code {proc.poll()})")


def test_ctrl_c_ends_the_run_with_a_cancelled_event(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 300)
    jsonl = tmp_path / "p.jsonl"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "openkb", "--kb", str(kb), "--progress-jsonl", str(jsonl),
             "add", "--jobs", "1", str(docs)],
            stdout=out, stderr=err, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            _wait_for_event(jsonl, "committed", proc, timeout=60)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 130, (tmp_path / "err").read_text()
    events = _read(jsonl)
    _assert_well_formed(events)
    terminal = events[-1]
    assert (terminal["event"], terminal["exit_code"]) == ("cancelled", 130)
    committed = len(api.list_documents(str(kb), Progress()))
    assert 0 < committed < 300 and terminal["counts"]["committed"] == committed


# -- summarize ----------------------------------------------------------------

def test_summarize_reports_where_the_time_went(cli, kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 6)
    (docs / "bad.pdf").write_bytes(b"garbage, not a PDF")
    jsonl = tmp_path / "p.jsonl"
    assert _add(cli, kb, jsonl, "--jobs", "2", "d", cwd=tmp_path).code == 1
    assert _add(cli, kb, jsonl, "--jobs", "1", str(_docs(tmp_path / "e", 2, "extra"))).code == 0
    with open(jsonl, "ab") as handle:  # something else appended to the file
        handle.write(b'{"hello": "world"}\nnot json at all\n')

    data = _summary(jsonl)
    first_run, second_run = data["runs_in_file"]
    assert data["run_id"] == second_run  # the default: the last run
    assert data["terminal"]["counts"]["committed"] == 2
    assert (data["torn_lines"], data["foreign_lines"]) == (1, 1)

    first = _summary(jsonl, "--run", first_run)
    phases = {p["phase"]: p for p in first["phases"]}
    assert {"scan", "prefilter", "prepare", "lock_wait", "commit", *COMMIT_STEPS} <= set(phases)
    assert phases["prepare"]["count"] == 7 and phases["prefilter"]["count"] == 7
    commits = phases["commit"]["count"]
    assert commits >= 1 and all(phases[s]["count"] == commits for s in COMMIT_STEPS)
    for stats in phases.values():
        assert 0 <= stats["max_ms"] <= stats["busy_ms"] and stats["wall_ms"] >= 0
    assert first["lock_waits"] == commits
    slow = [s["dur_ms"] for s in first["slowest_files"]]
    assert len(slow) == 7 and slow == sorted(slow, reverse=True)
    assert [f["file"] for f in first["failed_files"]] == ["d/bad.pdf"]
    assert first["terminal"]["counts"]["committed"] == 6
    assert first["terminal"]["exit_code"] == 1

    text = cli("progress", "summarize", "--run", first_run, str(jsonl))
    assert text.code == 0, text.err
    for expected in ("time per phase", "registry_write", "mark_committed", "lock wait",
                     "slowest files", "d/bad.pdf", "committed 6", "exit code 1",
                     "2 runs in the file", "skipped 1 torn and 1 foreign"):
        assert expected in text.out, expected

    missing = cli("progress", "summarize", "--run", "nope", str(jsonl))
    assert missing.code == 2 and first_run in missing.err


def test_summarize_writes_a_chrome_trace(cli, kb: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    assert _add(cli, kb, jsonl, "--jobs", "2", str(_docs(tmp_path / "d", 8))).code == 0
    out = tmp_path / "trace.json"
    result = cli("progress", "summarize", str(jsonl), "--chrome-trace", str(out))
    assert result.code == 0, result.err
    assert f"chrome trace written to {out}" in result.out
    trace = json.loads(out.read_text())["traceEvents"]
    spans = [t for t in trace if t["ph"] == "X"]
    assert {t["name"] for t in spans} >= {"scan", "prepare", "commit", *COMMIT_STEPS}
    assert all(t["dur"] >= 0 and isinstance(t["ts"], float | int) for t in spans)
    tracks = {t["args"]["name"] for t in trace if t["ph"] == "M"}
    assert {"openkb", "worker 0", "worker 1"} <= tracks
    assert any(t["ph"] == "i" and t["name"] == "complete" for t in trace)


def test_summarize_of_a_file_with_no_events_is_a_usage_error(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"foreign": 1}\n')
    result = cli("progress", "summarize", str(empty))
    assert result.code == 2 and "holds no openkb progress events" in result.err
    assert cli("progress", "summarize", str(tmp_path / "absent")).code == 2


# -- debug timing lines -------------------------------------------------------

@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_one_timing_line_per_committed_document(cli, kb: Path, tmp_path: Path,
                                                             how: str) -> None:
    docs = _docs(tmp_path / "d", 3)
    args = ["--debug"] if how == "flag" else []
    env = {"OPENKB_LOG": "debug"} if how == "env" else {}
    result = cli("--kb", str(kb), *args, "add", "--jobs", "1", str(docs), env=env)
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if "openkb.timing" in line]
    assert sorted(line.split("openkb.timing: ")[1].split(":")[0] for line in lines) == [
        "note-000", "note-001", "note-002"]
    for line in lines:
        for key in TIMING_KEYS:
            assert key in line, (key, line)
            value = line.split(key)[1].split()[0]
            assert value.endswith("ms") and float(value[:-2]) >= 0, line
    plain = cli("--kb", str(kb), "add", str(_docs(tmp_path / "e", 2, "other")))
    assert plain.code == 0 and "openkb.timing" not in plain.err


# -- heartbeats ---------------------------------------------------------------

def test_heartbeats_say_what_each_worker_is_doing(kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 3)
    (docs / "slow.md").write_text("# Slow\n\n" + "- item\n" * 30_000)  # a second or two
    jsonl = tmp_path / "p.jsonl"
    result = _add(_real, kb, jsonl, "--jobs", "2", str(docs), env={"OPENKB_HEARTBEAT_S": "0.2"})
    assert result.code == 0, result.err
    beats = [e for e in _read(jsonl) if e["event"] == "heartbeat"]
    assert beats, "no heartbeat in a run of several seconds"
    assert any(w["file"].endswith("slow.md") and w["busy_s"] > 0
               for b in beats for w in b["workers"])
    assert all(b["since_progress_s"] >= 0 and b["counts"]["total"] == 4 for b in beats)
    assert _summary(jsonl)["heartbeats"] == len(beats)


# -- regressions: empty files, timeouts, lock waits, runs of other commands --

def test_empty_files_in_a_parallel_add_fail_alone(cli, kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "d", {"a-empty.md": "", "b.md": markdown_doc("B", "bees")})
    jsonl = tmp_path / "p.jsonl"
    result = _add(cli, kb, jsonl, "--jobs", "2", str(docs))  # an exception here fails the test
    assert result.code == 1
    assert (_read(jsonl)[-1]["event"], _read(jsonl)[-1]["exit_code"]) == ("complete", 1)


def test_a_timed_out_conversion_closes_its_span(cli, kb: Path, tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 2)
    (docs / "slow.md").write_text("# Slow\n\n" + "- item\n" * 600_000)
    (kb / ".openkb" / "config.yaml").write_text("convert_timeout_s: 0.5\n")
    jsonl = tmp_path / "p.jsonl"
    assert _add(cli, kb, jsonl, "--jobs", "2", str(docs)).code == 1
    prepares = [e for e in _read(jsonl) if e["event"] == "prepare"]
    slow = [e["kind"] for e in prepares if e["file"].endswith("slow.md")]
    assert slow == ["start", "done"]


def _wait_for_idle_heartbeats(jsonl: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Hold on until the lock wait has 3 heartbeats, the last of them 1 s
    after the last conversion finished: a heartbeat that still named a
    finished file would then be caught by the 500 ms allowance below."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        complete = jsonl.read_bytes().rpartition(b"\n")[0]  # a line may be half-written
        events = [json.loads(line) for line in complete.splitlines()]
        wait_start = next((i for i, e in enumerate(events) if e["event"] == "lock_wait"),
                          len(events))
        beats = [e["t_ms"] for e in events[wait_start:] if e["event"] == "heartbeat"]
        finished = [e["t_ms"] for e in events if e["event"] == "prepare" and e["kind"] == "done"]
        if len(beats) >= 3 and finished and beats[-1] - max(finished) >= 1000:
            return
        time.sleep(0.05)
    pytest.fail(f"no 3 heartbeats in the lock wait, 1 s after the last conversion, within "
                f"{timeout}s (exit code {proc.poll()})")


def test_heartbeats_during_a_lock_wait_name_only_files_in_conversion(kb: Path,
                                                                     tmp_path: Path) -> None:
    docs = _docs(tmp_path / "d", 30)
    jsonl = tmp_path / "p.jsonl"
    lock = KBLock(KBLayout.at(kb), "openkb add")
    lock.acquire()
    with open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "openkb", "--kb", str(kb), "--progress-jsonl", str(jsonl),
             "add", "--jobs", "2", str(docs)], stdout=err, stderr=err,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OPENKB_HEARTBEAT_S": "0.3"})
        try:
            _wait_for_event(jsonl, "lock_wait", proc, timeout=60)
            _wait_for_idle_heartbeats(jsonl, proc, timeout=60)
        finally:
            lock.release()
        assert proc.wait(timeout=120) == 0
    events = _read(jsonl)
    finished_at = {e["file"]: e["t_ms"] for e in events
                   if e["event"] == "prepare" and e["kind"] == "done"}
    waited = next(e for e in events if e["event"] == "lock_wait" and e["kind"] == "done")
    beats = [e for e in events if e["event"] == "heartbeat"
             and waited["t_ms"] - waited["dur_ms"] < e["t_ms"] < waited["t_ms"]]
    assert len(beats) >= 3, "too few heartbeats in the lock wait"
    for beat in beats:  # allow for a result in a pipe the parent has not read yet
        for worker in beat["workers"]:
            assert finished_at[worker["file"]] > beat["t_ms"] - 500, (beat["t_ms"], worker)


def test_summarize_reads_the_hash_time_of_v1_spans_and_v2_prefilter_events(
        cli, tmp_path: Path) -> None:
    """A JSONL written by openkb 0.1 (schema v1, a hash span per file) still
    summarizes, and both schemas put the hashing in the prefilter phase."""
    def record(schema: str, seq: int, **fields: object) -> str:
        return json.dumps({"schema": schema, "run_id": schema, "seq": seq, "ts_ms": 0,
                           "t_ms": 10.0 * seq, "pid": 1, "worker": None, "rss_mib": 50.0,
                           **fields})
    v1, v2 = "openkb.progress.v1", SCHEMA
    lines = [
        record(v1, 1, event="hash", phase="prefilter", kind="start", file="a.md"),
        record(v1, 2, event="hash", phase="prefilter", kind="done", file="a.md", dur_ms=4.0),
        record(v1, 3, event="prefilter", phase="prefilter", kind="point", file="a.md"),
        record(v2, 1, event="prefilter", phase="prefilter", kind="point", file="a.md",
               bytes=10, hash_ms=6.0),
        record(v2, 2, event="prefilter", phase="prefilter", kind="point", file="b.md",
               bytes=10, hash_ms=3.0),
    ]
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    for run, busy, count in ((v1, 4.0, 1), (v2, 9.0, 2)):
        data = _summary(jsonl, "--run", run)
        assert data["runs_in_file"] == [v1, v2] and data["foreign_lines"] == 0
        prefilter = next(p for p in data["phases"] if p["phase"] == "prefilter")
        assert (prefilter["busy_ms"], prefilter["count"]) == (busy, count)
