"""LLM summaries against a real HTTP server on loopback (tests/llm_server.py)
that speaks the OpenAI chat-completions API: what lands in the pages, what
is paid for (requests counted at the server), and what happens when the
endpoint misbehaves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, markdown_doc, openkb_in_process, verify_ok, write_tree
from llm_server import ChatServer

from openkb import api
from openkb.progress import Progress


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as chat:
        yield chat


def configure(kb: Path, server: ChatServer, **llm: object) -> None:
    (kb / ".openkb" / "config.yaml").write_text(server.config_yaml(**llm), encoding="utf-8")


def docs(tmp_path: Path, count: int, folder: str = "docs") -> Path:
    return write_tree(tmp_path / folder, {
        f"d{i:02}.md": markdown_doc(f"Doc {i}", "attention heads", f"topic{i} layers")
        for i in range(count)})


def page(kb: Path, name: str) -> str:
    return (kb / "wiki" / "summaries" / f"{name}.md").read_text(encoding="utf-8")


def add(kb: Path, path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return openkb_in_process("--kb", str(kb), "add", str(path), "--llm", *extra)


def test_summaries_land_in_pages_and_keep_outline_terms_stats(
        kb: Path, tmp_path: Path, server: ChatServer) -> None:
    configure(kb, server)
    result = add(kb, docs(tmp_path, 6), "--jobs", "2")
    assert result.code == 0, result.err
    assert server.requests == 6 and sum(server.answered.values()) == 6
    text = page(kb, "d03")
    summary = text.split("## Summary\n\n")[1].split("\n\n")[0]
    assert summary == "LLM summary of Doc 3: it explains what Doc 3 covers."
    for section in ("## Outline", "## Key terms", "## Stats", "attention heads"):
        assert section in text
    assert "6 answered" in result.out
    verify_ok(kb)


def test_readd_and_recompile_make_no_new_call(kb: Path, tmp_path: Path,
                                              server: ChatServer) -> None:
    configure(kb, server)
    folder = docs(tmp_path, 4)
    assert add(kb, folder).code == 0
    before = {n: page(kb, n) for n in ("d00", "d01", "d02", "d03")}
    assert server.requests == 4
    # The same content again, under other names: skipped, nothing asked.
    copy = write_tree(tmp_path / "copy", {f"c{i}.md": (folder / f"d{i:02}.md").read_text()
                                          for i in range(4)})
    assert add(kb, copy).code == 0
    result = openkb_in_process("--kb", str(kb), "recompile", "--llm")
    assert result.code == 0, result.err
    assert "0 answered, 4 from cache" in result.out
    assert server.requests == 4
    assert {n: page(kb, n) for n in before} == before
    verify_ok(kb)


def test_recompile_llm_writes_summaries_for_documents_added_without(
        kb: Path, tmp_path: Path, server: ChatServer) -> None:
    configure(kb, server)
    assert openkb_in_process("--kb", str(kb), "add", str(docs(tmp_path, 3))).code == 0
    assert server.requests == 0  # nothing leaves the machine unless asked
    assert "LLM summary" not in page(kb, "d01")
    result = openkb_in_process("--kb", str(kb), "recompile", "--llm")
    assert result.code == 0, result.err
    assert server.requests == 3
    assert "LLM summary of Doc 1" in page(kb, "d01")
    verify_ok(kb)


def test_llm_without_an_endpoint_is_a_usage_error_naming_what_to_set(
        kb: Path, tmp_path: Path) -> None:
    result = add(kb, docs(tmp_path, 1))
    assert result.code == 2
    assert "llm.base_url" in result.err and "OPENAI_BASE_URL" in result.err
    assert api.list_documents(str(kb), Progress()) == []


def test_429_waits_for_retry_after(kb: Path, tmp_path: Path, server: ChatServer) -> None:
    configure(kb, server)
    server.script = [(429, {"Retry-After": "1"}, None)]
    result = add(kb, docs(tmp_path, 1))
    assert result.code == 0, result.err
    assert server.requests == 2
    assert server.asked_at[1] - server.asked_at[0] >= 0.95
    assert "1 retries (1 rate-limited)" in result.out
    assert "LLM summary of Doc 0" in page(kb, "d00")


def test_500_and_a_malformed_body_are_retried(kb: Path, tmp_path: Path,
                                             server: ChatServer) -> None:
    configure(kb, server)
    server.script = [(500, {}, None), (200, {}, b"{not json"), (502, {}, None)]
    result = add(kb, docs(tmp_path, 1))
    assert result.code == 0, result.err
    assert server.requests == 4
    assert "LLM summary of Doc 0" in page(kb, "d00")


def test_a_rejected_key_stops_the_llm_stage_once_with_one_message(
        kb: Path, tmp_path: Path, server: ChatServer) -> None:
    configure(kb, server, concurrency=1)
    server.status_always = 401
    result = add(kb, docs(tmp_path, 5))
    assert result.code == 0, result.err  # the documents are in, with extractive summaries
    assert server.requests == 1
    output = result.out + result.err
    assert output.count("refused the API key") == 1, output
    assert "OPENAI_API_KEY" in output
    assert len(api.list_documents(str(kb), Progress())) == 5
    assert "LLM summary" not in page(kb, "d00") and "## Summary" in page(kb, "d00")
    assert api.status(str(kb), Progress()).llm_pending == 5
    verify_ok(kb)


def test_pending_documents_are_counted_and_retried(kb: Path, tmp_path: Path,
                                                   server: ChatServer) -> None:
    configure(kb, server, max_retries=1)
    server.fail_titles = {"Doc 1"}
    result = add(kb, docs(tmp_path, 3))
    assert result.code == 0, result.err
    assert "1 document(s) kept their extractive summary" in result.out
    assert "LLM summary" not in page(kb, "d01")
    status = openkb_in_process("--kb", str(kb), "status")
    assert "1 document(s) wait for an LLM summary" in status.out
    verify_ok(kb)
    server.fail_titles = set()
    asked = server.requests
    result = add(kb, write_tree(tmp_path / "more", {"new.md": markdown_doc("New", "apples")}))
    assert result.code == 0, result.err
    assert server.requests == asked + 2  # the new document and the pending one, nothing else
    assert "LLM summary of Doc 1" in page(kb, "d01")
    assert api.status(str(kb), Progress()).llm_pending == 0
    verify_ok(kb)


def test_verify_checks_the_cache_and_repair_prunes_it(kb: Path, tmp_path: Path,
                                                     server: ChatServer) -> None:
    configure(kb, server)
    assert add(kb, docs(tmp_path, 3)).code == 0
    cache = kb / ".openkb" / "llm-cache"
    entries = sorted(cache.glob("*.json"))
    assert len(entries) == 3
    damaged = entries[0]
    record = json.loads(damaged.read_text())
    record["text"] = "tampered"
    damaged.write_text(json.dumps(record))
    report = api.verify(str(kb), Progress())
    assert [p.code for p in report.problems] == ["llm-cache"]
    assert "does not match" in report.problems[0].message
    assert api.remove(str(kb), ["d02"], Progress()).removed
    report = api.verify(str(kb), Progress(), repair=True)
    assert report.ok and report.llm_cache_pruned == 2  # the damaged one, and d02's
    assert len(list(cache.glob("*.json"))) == 1
    verify_ok(kb)


def test_sigkill_mid_run_then_rerun_never_asks_a_prompt_twice(
        kb: Path, tmp_path: Path, server: ChatServer) -> None:
    """A real process, killed with calls in flight after some replies came
    back: the re-run pays only for the replies it never received."""
    configure(kb, server, concurrency=2)
    folder = docs(tmp_path, 8)
    server.hold_after = 3
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENKB_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "add",
                             str(folder), "--llm", "--jobs", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = kb / ".openkb" / "llm-cache"
    deadline = time.monotonic() + 60
    try:
        while len(list(cache.glob("*.json"))) < 3 or server.requests < 5:
            assert proc.poll() is None and time.monotonic() < deadline, "never got mid-run"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    server.hold_after = None
    server.release.set()
    assert sum(server.answered.values()) == 3
    result = add(kb, folder)
    assert result.code == 0, result.err
    assert sorted(server.answered.values()) == [1] * 8  # every prompt answered once
    for i in range(8):
        assert f"LLM summary of Doc {i}:" in page(kb, f"d{i:02}")
    verify_ok(kb)


def test_a_timeout_is_retried(kb: Path, tmp_path: Path, server: ChatServer) -> None:
    configure(kb, server, timeout_s=0.5)
    server.slow_first, server.slow_s = 1, 2.0
    result = add(kb, docs(tmp_path, 1))
    assert result.code == 0, result.err
    assert server.requests == 2
    assert "LLM summary of Doc 0" in page(kb, "d00")


def test_progress_and_debug_timing_carry_the_llm_counters(kb: Path, tmp_path: Path,
                                                         server: ChatServer) -> None:
    configure(kb, server)
    events = tmp_path / "events.jsonl"
    result = openkb_in_process("--kb", str(kb), "--debug", "--progress-jsonl", str(events),
                               "add", str(docs(tmp_path, 3)), "--llm")
    assert result.code == 0, result.err
    llm = [json.loads(line)["llm"] for line in events.read_text().splitlines()
           if json.loads(line)["event"] == "llm"]
    assert len(llm) == 3
    last = llm[-1]
    assert (last["done"], last["total"], last["calls"], last["in_flight"]) == (3, 3, 3, 0)
    assert last["tokens_in"] > 0 and last["tokens_out"] == 36
    assert result.err.count("llm_wait=") == 3


def test_a_kb_of_an_earlier_release_gets_llm_summaries(tmp_path: Path,
                                                       server: ChatServer) -> None:
    """openkb 0.1's KB (tests/fixtures): upgraded by its first command, with
    the index of pending documents; its documents then take LLM summaries."""
    import sqlite3
    import tarfile

    with tarfile.open(Path(__file__).parent / "fixtures" / "crashed-kbs-0.1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    kb = tmp_path / "crashed-kbs-0.1" / "add-registry_write.after"
    configure(kb, server)
    result = openkb_in_process("--kb", str(kb), "recompile", "--llm")
    assert result.code == 0, result.err
    with sqlite3.connect(kb / ".openkb" / "kb.sqlite") as conn:
        assert conn.execute("SELECT name FROM migrations WHERE name = "
                            "'llm-summaries-pending-index'").fetchall()
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = "
                            "'documents_llm_pending'").fetchall()
    names = [row.name for row in api.list_documents(str(kb), Progress())]
    assert server.requests == len(names) == 3
    for name in names:
        assert "LLM summary of" in page(kb, name)
    verify_ok(kb)


def test_a_sweep_spares_cache_writes_in_flight_and_takes_dead_ones(kb: Path) -> None:
    """The LLM stage writes the cache without the KB lock; a lock holder's
    recovery sweep must not delete a live writer's temp file (it did: the
    reply was lost and its document left pending)."""
    from openkb.layout import KBLayout
    from openkb.recovery import leftover_paths

    cache = kb / ".openkb" / "llm-cache"
    cache.mkdir()
    live = cache / f".k1.json.openkb-tmp-{os.getpid()}-1"
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
    dead = cache / f".k2.json.openkb-tmp-{dead_pid}-1"
    live.write_text("{")
    dead.write_text("{")
    assert leftover_paths(KBLayout.at(kb)) == [dead]


def test_ctrl_c_does_not_wait_for_calls_in_flight(kb: Path, tmp_path: Path) -> None:
    """A blocked read cannot be interrupted, and the executor's threads are
    joined at exit: the process waited up to timeout_s after Ctrl-C."""
    with ChatServer(latency_s=60) as server:
        configure(kb, server, concurrency=2, timeout_s=120)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENKB_", "OPENAI_"))}
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "add",
                                 str(docs(tmp_path, 4)), "--llm", "--jobs", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while server.requests < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130  # not the 60 s the calls would take
    verify_ok(kb)


def test_calls_in_flight_are_bounded_by_concurrency_and_the_window(
        kb: Path, tmp_path: Path) -> None:
    """The stage lives inside the ingest's bounded window: however many
    threads it may use, no more calls are in flight than documents the
    window admits (jobs + prepare_buffer), and never more than concurrency."""
    folder = docs(tmp_path, 12)
    with ChatServer(latency_s=0.3) as server:
        configure(kb, server, concurrency=3)
        assert add(kb, folder, "--jobs", "1").code == 0
        assert server.max_in_flight == 3
    with ChatServer(latency_s=0.3) as server:
        config = kb / ".openkb" / "config.yaml"
        config.write_text(server.config_yaml(concurrency=16) + "prepare_buffer: 1\n")
        more = docs(tmp_path, 12, folder="more")
        for path in more.iterdir():  # other content, other prompts
            path.write_text(path.read_text() + "\nAnother paragraph.\n")
        assert add(kb, more, "--jobs", "1").code == 0
        assert server.requests == 12 and server.max_in_flight <= 2  # jobs 1 + buffer 1
    verify_ok(kb)
