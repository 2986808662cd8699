"""The parallel prepare pipeline with real processes: isolation of bad files,
limits, Ctrl-C, and a killed main process.

Workers are always real processes. The main process is a real one where a
signal is the point (a killed worker, Ctrl-C, SIGKILL, a crash point);
elsewhere it is this one (the CLI in-process), and the checks afterwards
call the library (the same code as `openkb list`, `verify`, `debug
tree-hash`), without an interpreter start-up each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, markdown_doc, run_openkb, tree_hash, verify_ok, write_tree
from pdfgen import make_pdf

from openkb import api
from openkb.model import PrepareTask
from openkb.prepare.convert_pdf import convert_pdf, extract_pages
from openkb.prepare.parts import SPLIT_MIN_BYTES, Assembly, split
from openkb.progress import Progress

pytestmark = pytest.mark.xdist_group("workers")


def _kb(tmp_path: Path, config: str = "") -> Path:
    kb = tmp_path / "kb"
    api.init(str(kb))
    if config:
        (kb / ".openkb" / "config.yaml").write_text(config)
    return kb


def _many(root: Path, n: int) -> Path:
    return write_tree(root, {f"d{i // 100}/note-{i:04d}.md":
                             markdown_doc(f"Note {i}", f"topic{i % 17}", "shared theme")
                             for i in range(n)})


def _names(kb: Path) -> set[str]:
    """The documents, after finishing what a killed run left (as `list` does)."""
    return {row.name for row in api.list_documents(str(kb), Progress())}


def _verify(kb: Path) -> None:
    verify_ok(kb)


def _add(kb: Path, docs: Path, jobs: str | None = None) -> int:
    report = api.add(str(kb), [str(docs)], Progress(), jobs=int(jobs) if jobs else None)
    return report.exit_code


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _events_so_far(path: Path) -> list[dict]:
    """The events of a run still writing: a reader may catch the last line
    half-copied into the file, so only lines ending in a newline count."""
    if not path.exists():
        return []
    complete = path.read_text().rpartition("\n")[0]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def test_a_file_that_exhausts_worker_memory_fails_alone(cli, tmp_path: Path) -> None:
    kb = _kb(tmp_path, "worker_memory_mb: 200\n")
    docs = _many(tmp_path / "docs", 6)
    # A big HTML file: the converter's working set goes past 200 MiB.
    (docs / "huge.html").write_text("<p>" + "word " * 20_000_000 + "</p>")
    result = cli("--kb", str(kb), "add", "--jobs", "2", str(docs))
    assert result.code == 1, result.err
    assert "huge.html" in result.out and "ran out of memory" in result.out
    assert len(_names(kb)) == 6
    _verify(kb)


def test_a_killed_worker_fails_only_its_file(tmp_path: Path) -> None:
    kb = _kb(tmp_path, "convert_timeout_s: 600\n")
    docs = _many(tmp_path / "docs", 20)
    # Slow to convert (markdown-it on a very long document): time to kill it.
    (docs / "d0" / "note-0005-slow.md").write_text("# Slow\n\n" + "- item\n" * 1_500_000)
    jsonl = tmp_path / "p.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", "--progress-jsonl",
         str(jsonl), "add", "--jobs", "2", str(docs)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.05)
        for event in _events_so_far(jsonl):
            if event["event"] == "prepare" and event["kind"] == "start" and \
                    event.get("file", "").endswith("slow.md"):
                victim = event["pid"]
    assert victim is not None, "the slow file never started"
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "note-0005-slow.md: worker process died (killed by signal SIGKILL)" in err + out
    assert len(_names(kb)) == 20
    _verify(kb)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_slow_file_times_out_and_the_rest_is_added(cli, tmp_path: Path, jobs: str) -> None:
    kb = _kb(tmp_path, "convert_timeout_s: 1\n")
    docs = _many(tmp_path / "docs", 5)
    (docs / "slow.md").write_text("# Slow\n\n" + "- item\n" * 1_500_000)
    result = cli("--kb", str(kb), "add", "--jobs", jobs, str(docs))
    assert result.code == 1
    assert "slow.md: timed out after 1s (convert_timeout_s)" in result.out
    assert len(_names(kb)) == 5
    _verify(kb)


def test_files_over_the_size_limit_fail_without_being_read(cli, tmp_path: Path) -> None:
    kb = _kb(tmp_path, "max_file_mb: 1\n")
    docs = _many(tmp_path / "docs", 3)
    (docs / "big.txt").write_text("x " * 1_100_000)
    result = cli("--kb", str(kb), "add", str(docs))
    assert result.code == 1
    assert "big.txt: too large: 2.1 MiB (limit max_file_mb = 1)" in result.out
    assert len(_names(kb)) == 3


def test_the_window_of_prepared_documents_is_bounded(cli, tmp_path: Path) -> None:
    kb = _kb(tmp_path, "prepare_buffer: 4\ncommit_group_size: 2\n")
    docs = _many(tmp_path / "docs", 120)
    jsonl = tmp_path / "p.jsonl"
    result = cli("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", "--jobs", "2", str(docs))
    assert result.code == 0, result.err
    in_flight = peak = 0
    for event in _events(jsonl):
        if event["event"] == "prefilter" and event.get("outcome") == "new":
            in_flight += 1  # submitted to prepare
        elif event["event"] == "committed":
            in_flight -= len(event["doc"])
        peak = max(peak, in_flight)
    assert 0 < peak <= 2 + 4


def _start_add(kb: Path, docs: Path, jsonl: Path, stderr) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-m", "openkb", "--kb", str(kb), "--progress-jsonl", str(jsonl),
         "add", "--jobs", "2", str(docs)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=stderr, text=True)


def _wait_for(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def _wait_for_commit(jsonl: Path) -> None:
    _wait_for(lambda: any(e["event"] == "committed" for e in _events_so_far(jsonl)),
              "a first commit")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE  # a zombie has exited
    except psutil.NoSuchProcess:
        return False


def _clean_hash(tmp_path: Path, docs: Path) -> str:
    clean = tmp_path / "clean"
    api.init(str(clean))
    assert _add(clean, docs) == 0
    return tree_hash(clean)


@pytest.mark.heavy
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(tmp_path: Path, presses: int) -> None:
    kb = _kb(tmp_path, "commit_group_size: 4\n")
    docs = _many(tmp_path / "docs", 400)
    jsonl = tmp_path / "p.jsonl"
    err_path = tmp_path / "err"
    with open(err_path, "w") as err:
        proc = _start_add(kb, docs, jsonl, err)
        _wait_for_commit(jsonl)
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        if presses == 2:  # once the first press is taken, or the two may count as one
            _wait_for(lambda: "Ctrl-C again" in err_path.read_text(), "the first press taken")
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    assert proc.returncode == 130, err_path.read_text()
    terminal = [e for e in _events(jsonl) if e["kind"] == "terminal"]
    assert [e["event"] for e in terminal] == ["cancelled"]
    assert workers
    _wait_for(lambda: not [w for w in workers if _alive(w)], "every worker gone")
    # Looked at before anything reads the KB: a reader sweeps leftovers.
    assert not any((kb / ".openkb" / "staging").iterdir())
    assert 0 < len(_names(kb)) < 400
    _verify(kb)
    assert _add(kb, docs) == 0
    assert len(_names(kb)) == 400
    assert tree_hash(kb) == _clean_hash(tmp_path, docs)


@pytest.mark.heavy
def test_sigkill_of_the_main_process_loses_nothing_committed(tmp_path: Path) -> None:
    kb = _kb(tmp_path)
    docs = _many(tmp_path / "docs", 300)
    jsonl = tmp_path / "p.jsonl"
    proc = _start_add(kb, docs, jsonl, subprocess.DEVNULL)
    _wait_for_commit(jsonl)
    committed = {d for e in _events(jsonl) if e["event"] == "committed" for d in e["doc"]}
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait(timeout=60)
    # Orphaned workers notice their parent is gone and exit; until then one
    # may still write its staging files behind the recovery's back.
    _wait_for(lambda: not [w for w in workers if _alive(w)], "every orphaned worker gone")
    assert committed <= _names(kb)  # reading also finished what the kill left
    _verify(kb)
    assert _add(kb, docs) == 0
    assert tree_hash(kb) == _clean_hash(tmp_path, docs)


@pytest.mark.heavy
@pytest.mark.parametrize("point", ["journal.after", "publish.file:2", "compile.after",
                                   "registry_write.before", "registry_write.after",
                                   "mark_committed.cleaned"])
def test_crash_points_with_parallel_workers(tmp_path: Path, point: str) -> None:
    kb = _kb(tmp_path)
    docs = _many(tmp_path / "docs", 40)
    crashed = run_openkb("--kb", str(kb), "add", "--jobs", "2", str(docs),
                         env={"OPENKB_CRASH_AT": point})
    assert crashed.returncode == -9
    _names(kb)  # a reader finishes the transaction
    _verify(kb)
    assert _add(kb, docs, jobs="2") == 0
    _verify(kb)
    assert tree_hash(kb) == _clean_hash(tmp_path, docs)


# -- a long PDF read in parts ------------------------------------------------------


def _long_pdf(pages: int = 40) -> bytes:
    """Over SPLIT_MIN_BYTES, so a parallel add reads it in parts."""
    text = [f"Chapter {n} on tidal gauges and harbour sediment. " * 300 for n in range(pages)]
    data = make_pdf(text, title="Harbour Survey", outline=[("Start", 0), ("End", pages - 1)])
    assert len(data) >= SPLIT_MIN_BYTES
    return data


def test_a_long_pdf_read_in_parts_gives_the_same_kb_as_one_job(cli, tmp_path: Path) -> None:
    docs = _many(tmp_path / "docs", 4)
    (docs / "survey.pdf").write_bytes(_long_pdf())
    # Large, says it is a PDF, is not one: every part fails, the file once.
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(SPLIT_MIN_BYTES))
    hashes = []
    for jobs in ("1", "2"):
        kb = tmp_path / f"kb{jobs}"
        api.init(str(kb))
        jsonl = tmp_path / f"p{jobs}.jsonl"
        result = cli("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", "--jobs", jobs,
                     str(docs))
        assert result.code == 1, result.err
        assert result.out.count("broken.pdf") == 1 and "malformed PDF" in result.out
        assert "survey" in _names(kb)
        _verify(kb)
        hashes.append(tree_hash(kb))
        parts = [e.get("part") for e in _events(jsonl) if e["event"] == "prepare"
                 and e["kind"] == "done" and e["file"].endswith("survey.pdf")]
        assert sorted(parts, key=str) == ([None] if jobs == "1"
                                          else ["1/2", "2/2", "assemble"])
    assert hashes[0] == hashes[1]
    show = cli("--kb", str(tmp_path / "kb2"), "show", "survey")
    assert "Harbour Survey" in show.out and "40" in show.out


def test_parts_of_a_pdf_assemble_into_the_whole_conversion() -> None:
    data = make_pdf([f"Page {n} text about lighthouses." for n in range(7)] + [""],
                    title="Lights", outline=[("First", 0)])
    task = PrepareTask(seq=5, path="x.pdf", display="x.pdf", sha256="", size=len(data),
                       name="x", kind="pdf", ext=".pdf", staging_prefix="/nonexistent")
    assembly = Assembly(task, 3)
    for part in reversed(split(task, 3)):  # parts come back in any order
        assembly.add(extract_pages(data, task.seq, *part.part), 1.0)
    assert assembly.complete and assembly.failure is None
    assert convert_pdf(data, assembly.whole().pages) == convert_pdf(data)


def test_a_timeout_swallowed_once_still_ends_the_conversion() -> None:
    """--jobs 1 times conversions out with SIGALRM; if the garbage collector
    happens to be running a weakref callback when it fires, Python prints
    and drops the exception. The alarm must fire again."""
    from openkb.prepare import pool

    swallowed = 0
    start = time.monotonic()
    with pytest.raises(pool._Timeout), pool._alarm(0.2):
        while time.monotonic() - start < 10:
            try:
                time.sleep(0.01)
            except pool._Timeout:
                if swallowed:
                    raise
                swallowed += 1  # as an unraisable-exception hook would
    assert swallowed == 1 and time.monotonic() - start < 5
