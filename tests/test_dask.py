"""The dask executor on a real cluster: a LocalCluster on loopback, and real
``dask scheduler`` / ``dask worker`` processes on loopback TCP, with a worker
SIGKILLed mid-run and the scheduler lost mid-run.

Kept to a few cases: a cluster takes seconds to start on two cores."""

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
from conftest import ROOT, corpus_dir, markdown_doc, tree_hash, verify_ok, write_tree
from executor_corpus import count_documents, mixed_corpus, new_kb

from openkb import api
from openkb.progress import Progress

pytest.importorskip("distributed", reason="the dask executor needs openkb[dask] "
                    "(`pip install 'openkb[dask]'`; `make test` installs it)")

pytestmark = pytest.mark.xdist_group("dask")

DASK = Path(sys.executable).parent / "dask"
# markdown-it takes a few seconds on it: time to kill whoever converts it.
SLOW_MD = "# Slow\n\n" + "- item\n" * 40_000


def _reference(tmp_path: Path, docs: Path) -> str:
    """The tree hash of the KB the process executor makes of ``docs``."""
    kb = new_kb(tmp_path, "kb-process")
    api.add(str(kb), [str(docs)], Progress(), jobs=2, executor="process")
    return tree_hash(kb)


@pytest.mark.parametrize("inputs", ["bytes", "path"])
def test_a_local_cluster_builds_the_same_kb_as_processes(tmp_path: Path, inputs: str) -> None:
    docs = mixed_corpus(tmp_path / "docs")
    kb = new_kb(tmp_path, "kb-dask", f"dask_inputs: {inputs}\n")
    progress, events = Progress(), []
    progress.subscribe(events.append)
    report = api.add(str(kb), [str(docs)], progress, jobs=2, executor="dask")
    # The stream says which executor ran, and which Dask worker took each file.
    executor = next(e for e in events if e["event"] == "executor")
    assert executor["executor"] == "dask"
    assert executor["scheduler"].startswith("tcp://127.0.0.1:")
    starts = [e for e in events if e["event"] == "prepare" and e["kind"] == "start"]
    assert all(e["address"].startswith("tcp://127.0.0.1:") for e in starts)
    assert {e["worker"] for e in starts} <= {0, 1}
    assert [f.display for f in report.failed] == [str(docs / "empty.md")]
    assert report.failed[0].reason == "empty file (0 bytes)"
    verify_ok(kb)
    assert tree_hash(kb) == _reference(tmp_path, docs)


# -- a cluster of real processes ------------------------------------------------
class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.file = tmp_path / "scheduler.json"
        self.log = (tmp_path / "dask.log").open("w")
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _start(self, command: str, args: tuple[str, ...],
               env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen([str(DASK), command, *args], stdout=self.log, stderr=self.log,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                start_new_session=True)

    def start(self, workers: int, allowed_failures: int = 3) -> str:
        self.scheduler = self._start(
            "scheduler", env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES":
                              str(allowed_failures)},
            args=("--host", "127.0.0.1", "--port", "0",
                  "--no-dashboard", "--scheduler-file", str(self.file)))
        deadline = time.monotonic() + 60
        while not self.file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(self.file.read_text())["address"]
        for _ in range(workers):
            self.workers.append(self._start(
                "worker", (address, "--host", "127.0.0.1", "--nthreads", "1",
                           "--no-dashboard")))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
        return address

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker's nanny and its child
                proc.wait()
        self.log.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _add(kb: Path, docs: Path, jsonl: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", "--progress-jsonl",
         str(jsonl), "add", *args, str(docs)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _wait_for_event(jsonl: Path, proc: subprocess.Popen, match) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists():
            for line in jsonl.read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:  # a line being written
                    continue
                if match(event):
                    return event
        time.sleep(0.05)
    pytest.fail(f"the event never came; the add ended with {proc.poll()}")


def _corpus_with_a_slow_file(tmp_path: Path) -> Path:
    docs = write_tree(tmp_path / "docs", {f"n{i:02d}.md": markdown_doc(f"N{i}", f"topic{i}")
                                          for i in range(20)})
    (docs / "n05-slow.md").write_text(SLOW_MD)
    return docs


@pytest.mark.parametrize("kills", [1, 2])
def test_a_dask_worker_killed_mid_run_on_a_real_cluster(tmp_path: Path, cluster: Cluster,
                                                         kills: int) -> None:
    """Killed once, the file runs again elsewhere; killed each time it runs
    (as a file over the workers' memory limit would), only it fails."""
    docs = _corpus_with_a_slow_file(tmp_path)
    # A task whose workers died more than this often ends as KilledWorker.
    address = cluster.start(workers=2, allowed_failures=1)
    kb = new_kb(tmp_path, "kb-dask")
    jsonl = tmp_path / "p.jsonl"
    proc = _add(kb, docs, jsonl, "--scheduler", address)
    killed: list[int] = []
    for _ in range(kills):
        started = _wait_for_event(
            jsonl, proc, lambda e: e["event"] == "prepare" and e["kind"] == "start"
            and e["file"].endswith("slow.md") and e["pid"] not in killed)
        assert started["address"].startswith("tcp://127.0.0.1:")
        os.kill(started["pid"], signal.SIGKILL)  # the worker process converting it
        killed.append(started["pid"])
    out, err = proc.communicate(timeout=180)
    verify_ok(kb)
    if kills == 1:
        # The scheduler ran the file again on a worker that lives.
        assert proc.returncode == 0, err
        assert tree_hash(kb) == _reference(tmp_path, docs)
    else:
        # Only the file that killed them failed, not those queued with it.
        assert proc.returncode == 1, err
        assert "n05-slow.md: the Dask workers converting it died each time" in out + err
        assert "failed 1 in" in out + err
        assert count_documents(kb) == 20


def test_the_scheduler_lost_mid_run_stops_the_add_and_a_rerun_finishes(
        tmp_path: Path, cluster: Cluster) -> None:
    docs = _corpus_with_a_slow_file(tmp_path)
    address = cluster.start(workers=2)
    kb = new_kb(tmp_path, "kb-dask", "commit_group_size: 1\n")
    jsonl = tmp_path / "p.jsonl"
    proc = _add(kb, docs, jsonl, "--scheduler", address)
    # The files before the slow one are committed while it converts.
    _wait_for_event(jsonl, proc, lambda e: e["event"] == "prepare" and e["kind"] == "start"
                    and e["file"].endswith("slow.md"))
    _wait_for_event(jsonl, proc, lambda e: e["event"] == "committed")
    assert cluster.scheduler is not None
    os.killpg(cluster.scheduler.pid, signal.SIGKILL)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "lost the Dask scheduler" in err
    assert "Traceback" not in err, err
    committed = count_documents(kb)
    assert 0 < committed < 21  # what was committed before is kept
    verify_ok(kb)
    api.add(str(kb), [str(docs)], Progress(), jobs=2, executor="thread")
    assert count_documents(kb) == 21
    verify_ok(kb)
    assert tree_hash(kb) == _reference(tmp_path, docs)


@pytest.mark.heavy
@pytest.mark.corpus
@pytest.mark.parametrize("corpus", ["pdf-sample-files", "md-rfcs"])
def test_a_local_cluster_gives_the_same_kb_on_the_shared_corpora(tmp_path: Path,
                                                                  corpus: str) -> None:
    docs = corpus_dir(corpus)
    kb = new_kb(tmp_path, "kb-dask")
    api.add(str(kb), [str(docs)], Progress(), jobs=2, executor="dask")
    verify_ok(kb)
    assert tree_hash(kb) == _reference(tmp_path, docs)
