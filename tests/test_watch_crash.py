"""`openkb watch` SIGKILLed in the middle of a batch, while it commits: the
next watch recovers, `verify` passes, and the KB is what a sync that never
crashed gives (same tree hash, origins included).

The batch deletes one file, moves one and creates one, so it commits two
transactions: the moves and removals first (the first hit of a crash
point after the catch-up, which has nothing to commit), then the add (the
second hit)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, markdown_doc, tree_hash, verify_ok, write_tree

from openkb import api
from openkb.progress import Progress

pytestmark = pytest.mark.heavy

# Each reached once per transaction, so ":1" and ":2" pick the transaction.
POINTS = ("journal.after", "publish.after", "compile.after", "registry_write.after",
          "mark_committed.cleaned")


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def _batches_done(jsonl: Path) -> int:
    if not jsonl.exists():
        return 0
    done = 0
    for line in jsonl.read_bytes().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line
        done += record.get("event") == "watch_batch" and record.get("kind") == "done"
    return done


def _watch(kb: Path, folder: Path, jsonl: Path, log: Path,
           crash_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKB_")}
    env.update(PYTHONPATH=str(ROOT), OPENKB_PROGRESS_JSONL=str(jsonl))
    if crash_at:
        env["OPENKB_CRASH_AT"] = crash_at
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "openkb", "--kb", str(kb), "watch", "--jobs", "1",
             "--debounce", "0.3", str(folder)], stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.mark.parametrize("nth", [1, 2], ids=["removals", "add"])
@pytest.mark.parametrize("point", POINTS)
def test_watch_killed_mid_batch_is_recovered_by_the_next_watch(
        tmp_path: Path, point: str, nth: int) -> None:
    folder = write_tree(tmp_path / "notes", {
        "apples.md": markdown_doc("Apples", "apples", "orchards"),
        "pears.md": markdown_doc("Pears", "pears", "orchards"),
        "deep/quinces.md": markdown_doc("Quinces", "quinces", "orchards"),
    })
    kb, reference = tmp_path / "kb", tmp_path / "reference"
    api.init(str(kb))
    api.sync(str(kb), [str(folder)], Progress(), jobs=1)
    shutil.copytree(kb, reference)
    log = tmp_path / "watch.log"
    first = _watch(kb, folder, tmp_path / "first.jsonl", log, crash_at=f"{point}:{nth}")
    try:
        _until(lambda: _batches_done(tmp_path / "first.jsonl") >= 1, "the catch-up sync")
        (folder / "pears.md").unlink()
        (folder / "apples.md").rename(folder / "deep" / "apples-moved.md")
        write_tree(folder, {"figs.md": markdown_doc("Figs", "figs", "orchards")})
        assert first.wait(timeout=60) == -signal.SIGKILL, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # What a sync that never crashed makes of the same folder.
    api.sync(str(reference), [str(folder)], Progress(), jobs=1)
    expected = tree_hash(reference)
    # The next watch recovers what the kill left, and catches up.
    second = _watch(kb, folder, tmp_path / "second.jsonl", log)
    try:
        _until(lambda: _batches_done(tmp_path / "second.jsonl") >= 1, "the next catch-up")
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=60) == 0, log.read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    verify_ok(kb)
    assert {r.name for r in api.list_documents(str(kb), Progress())} == {
        "apples", "quinces", "figs"}
    assert tree_hash(kb) == expected
