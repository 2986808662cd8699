"""Executors (process, thread): the same KB whichever prepares it, the
thread executor's timeout, the flags and settings, and quiet workers when
the main process is killed. Dask has its own file (tests/test_dask.py)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import corpus_dir, markdown_doc, run_openkb, tree_hash, verify_ok, write_tree
from executor_corpus import count_documents, mixed_corpus, new_kb

from openkb import api
from openkb.progress import Progress

pytestmark = pytest.mark.xdist_group("workers")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_thread_executor_builds_the_same_kb_as_processes(cli, tmp_path: Path,
                                                             jobs: str) -> None:
    docs = mixed_corpus(tmp_path / "docs")
    hashes = {}
    for executor in ("process", "thread"):
        kb = new_kb(tmp_path, f"kb-{executor}")
        result = cli("--kb", str(kb), "add", "--jobs", jobs, "--executor", executor, str(docs))
        assert result.code == 1, result.err  # empty.md fails, with either
        assert "empty.md: empty file (0 bytes)" in result.out
        verify_ok(kb)
        hashes[executor] = tree_hash(kb)
    assert hashes["process"] == hashes["thread"]


def test_the_executor_can_be_set_in_the_config(cli, tmp_path: Path) -> None:
    kb = new_kb(tmp_path, config="executor: thread\n")
    docs = write_tree(tmp_path / "docs", {"a.md": markdown_doc("A", "apples")})
    jsonl = tmp_path / "p.jsonl"
    result = cli("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", "-j", "2", str(docs))
    assert result.code == 0, result.err
    # The file was prepared by this process's threads, not by a worker.
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    starts = [e for e in events if e["event"] == "prepare" and e["kind"] == "start"]
    assert [e["pid"] for e in starts] == [os.getpid()]


def test_a_bad_executor_or_a_scheduler_without_dask_is_a_usage_error(cli, tmp_path: Path) -> None:
    kb = new_kb(tmp_path)
    docs = write_tree(tmp_path / "docs", {"a.md": markdown_doc("A", "apples")})
    result = cli("--kb", str(kb), "add", "--executor", "fibers", str(docs))
    assert result.code == 2
    assert "invalid value 'fibers' for executor" in result.err
    result = cli("--kb", str(kb), "add", "--executor", "thread", "--scheduler",
                 "tcp://127.0.0.1:1", str(docs))
    assert result.code == 2
    assert "a scheduler address is for the dask executor" in result.err
    assert "--executor dask" in result.err
    assert count_documents(kb) == 0


def _prepare_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("openkb-prepare")]


def test_a_slow_file_times_out_on_a_thread_and_the_thread_is_stopped(cli,
                                                                      tmp_path: Path) -> None:
    kb = new_kb(tmp_path, config="convert_timeout_s: 3\n")
    docs = write_tree(tmp_path / "docs", {f"n{i}.md": markdown_doc(f"N{i}", f"t{i}")
                                          for i in range(5)})
    # markdown-it takes far longer than 3 s on it (pure Python: the deadline
    # interrupts it at its next instruction).
    (docs / "slow.md").write_text("# Slow\n\n" + "- item\n" * 1_500_000)
    # Only this add's threads: an earlier test in this worker process may
    # have left a thread of its own finishing a file.
    earlier = set(_prepare_threads())
    started = time.monotonic()
    result = cli("--kb", str(kb), "add", "--jobs", "2", "--executor", "thread", str(docs))
    assert result.code == 1, result.err
    assert "slow.md: timed out after 3s (convert_timeout_s)" in result.out
    assert count_documents(kb) == 5, result.out
    verify_ok(kb)
    # The thread is not left converting in the background for the rest of
    # the process's life: it stopped at its deadline.
    deadline = time.monotonic() + 10
    while set(_prepare_threads()) - earlier and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_prepare_threads()) - earlier, "a timed-out prepare thread is still running"
    assert time.monotonic() - started < 30


def test_workers_exit_quietly_when_the_main_process_is_killed(tmp_path: Path) -> None:
    kb = new_kb(tmp_path)
    # Enough work queued to the workers that they are busy when the main
    # process dies at its first commit.
    docs = write_tree(tmp_path / "docs", {
        f"n{i:03d}.md": f"# Note {i}\n\n" + f"words about topic {i} and more. " * 3000
        for i in range(60)})
    # capture_output reads stderr to its end: until every worker, which
    # shares it, has exited too.
    result = run_openkb("--kb", str(kb), "--quiet", "add", "--jobs", "2", str(docs),
                        env={"OPENKB_CRASH_AT": "publish.before"}, timeout=120)
    assert result.returncode == -9, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipeError" not in result.stderr, result.stderr
    result = run_openkb("--kb", str(kb), "--quiet", "add", "--jobs", "2", str(docs))
    assert result.returncode == 0, result.stderr
    assert count_documents(kb) == 60
    verify_ok(kb)


@pytest.mark.heavy
@pytest.mark.corpus
@pytest.mark.parametrize("corpus", ["pdf-sample-files", "md-rfcs"])
def test_process_and_thread_give_the_same_kb_on_the_shared_corpora(tmp_path: Path,
                                                                   corpus: str) -> None:
    docs = corpus_dir(corpus)
    hashes = {}
    for executor in ("process", "thread"):
        kb = new_kb(tmp_path, f"kb-{executor}")
        api.add(str(kb), [str(docs)], Progress(), jobs=2, executor=executor)
        hashes[executor] = tree_hash(kb)
    assert hashes["process"] == hashes["thread"]


# -- sync takes the same flags -------------------------------------------------

def test_sync_prepares_on_the_executor_it_is_given(cli, tmp_path: Path) -> None:
    docs = mixed_corpus(tmp_path / "docs", notes=6)
    hashes = {}
    for executor in ("process", "thread"):
        kb = new_kb(tmp_path, f"kb-{executor}")
        jsonl = tmp_path / f"{executor}.jsonl"
        result = cli("--kb", str(kb), "--progress-jsonl", str(jsonl), "sync", "--jobs", "2",
                     "--executor", executor, str(docs))
        assert result.code == 1, result.err  # empty.md fails, with either
        events = [json.loads(line) for line in jsonl.read_text().splitlines()]
        (chosen,) = [e["executor"] for e in events if e["event"] == "executor"]
        assert chosen == executor
        pids = {e["pid"] for e in events if e["event"] == "prepare" and e["kind"] == "start"}
        assert (pids == {os.getpid()}) == (executor == "thread")
        verify_ok(kb)
        hashes[executor] = tree_hash(kb)
    assert hashes["process"] == hashes["thread"]
    kb = tmp_path / "kb-thread"
    result = cli("--kb", str(kb), "sync", "--executor", "thread", "--scheduler",
                 "tcp://127.0.0.1:1", str(docs))
    assert result.code == 2 and "a scheduler address is for the dask executor" in result.err
    assert "--executor dask" in result.err


@pytest.mark.parametrize("point", ["publish.after", "registry_write.after"])
def test_a_sync_on_threads_killed_mid_commit_is_recovered(tmp_path: Path, point: str) -> None:
    docs = mixed_corpus(tmp_path / "docs", notes=6)
    reference = new_kb(tmp_path, "reference")
    api.sync(str(reference), [str(docs)], Progress(), jobs=2)
    kb = new_kb(tmp_path)
    sync = ["--kb", str(kb), "--quiet", "sync", "--jobs", "2", "--executor", "thread",
            str(docs)]
    killed = run_openkb(*sync, env={"OPENKB_CRASH_AT": point})
    assert killed.returncode == -9, killed.stderr
    assert run_openkb("--kb", str(kb), "status").returncode == 0  # recovers
    verify_ok(kb)
    assert run_openkb(*sync).returncode == 1  # empty.md, as without the kill
    verify_ok(kb)
    assert tree_hash(kb) == tree_hash(reference)
