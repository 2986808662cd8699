"""`openkb watch` as a real process, following real filesystem events: the
KB follows creations, edits and deletions; temporary files are ignored; a
watched folder that disappears pauses the watch and removes nothing; SIGINT
and SIGTERM end it cleanly after the batch in flight."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT, markdown_doc, verify_ok, write_tree

from openkb import api
from openkb.progress import Progress

pytestmark = pytest.mark.heavy


def _docs(kb: Path) -> set[str]:
    return {row.name for row in api.list_documents(str(kb), Progress())}


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.1)


@pytest.fixture
def watching(kb: Path, tmp_path: Path) -> Iterator[tuple[Path, Path, subprocess.Popen]]:
    folder = write_tree(tmp_path / "notes", {
        "apples.md": markdown_doc("Apples", "apples"),
        "pears.md": markdown_doc("Pears", "pears"),
        "plums.md": markdown_doc("Plums", "plums"),
    })
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKB_")}
    env["PYTHONPATH"] = str(ROOT)
    out = (tmp_path / "watch.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "openkb", "--kb", str(kb), "watch", "--jobs", "1",
         "--debounce", "0.3", str(folder)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _until(lambda: _docs(kb) == {"apples", "pears", "plums"}, "the catch-up sync")
        yield kb, folder, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        out.close()


def test_the_kb_follows_the_folder_and_sigint_stops_it(
        watching: tuple[Path, Path, subprocess.Popen], tmp_path: Path) -> None:
    kb, folder, proc = watching
    (folder / "figs.md").write_text(markdown_doc("Figs", "figs"))
    (folder / "draft.md.tmp").write_text(markdown_doc("Draft", "drafts"))
    (folder / ".hidden.md").write_text(markdown_doc("Hidden", "secrets"))
    _until(lambda: "figs" in _docs(kb), "a created file")
    (folder / "pears.md").unlink()
    _until(lambda: "pears" not in _docs(kb), "a deleted file")
    (folder / "apples.md").write_text(markdown_doc("Apples", "apples", "cider"))
    _until(lambda: "cider" in api.show(str(kb), "apples", Progress()).summary, "an edit")
    assert _docs(kb) == {"apples", "plums", "figs"}  # no temporary or hidden file
    status = api.status(str(kb), Progress())
    assert any(run.command == "openkb watch" and run.pid == proc.pid for run in status.running)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    output = (tmp_path / "watch.out").read_text()
    assert "stopped after" in output, output
    assert not api.status(str(kb), Progress()).running
    verify_ok(kb)


def test_a_vanished_folder_pauses_the_watch_and_removes_nothing(
        watching: tuple[Path, Path, subprocess.Popen], tmp_path: Path) -> None:
    kb, folder, proc = watching
    aside = tmp_path / "aside"
    folder.rename(aside)  # the drive is unmounted
    _until(lambda: "paused" in (tmp_path / "watch.out").read_text(), "the pause warning")
    time.sleep(1.0)
    assert _docs(kb) == {"apples", "pears", "plums"}
    aside.rename(folder)  # and mounted again, with one file less
    (folder / "plums.md").unlink()
    _until(lambda: "plums" not in _docs(kb), "the catch-up sync after the pause")
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    verify_ok(kb)
    shutil.rmtree(folder)
