"""The stat cache: a re-sync of unchanged files opens none of them; a file
whose stat changed in any field, or whose entry is racily clean, is read."""

from __future__ import annotations

import os
import sqlite3
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import markdown_doc, verify_ok, write_tree

from openkb import api
from openkb.model import ScanEntry
from openkb.progress import Progress
from openkb.registry import FileStat, Registry
from openkb.statcache import RACY_NS, StatCache

HOUR_NS = 3600 * 10**9
OLD_FIXTURE = Path(__file__).parent / "fixtures" / "kb-339f44c.tar.gz"


class OpenCounter:
    """Counts files opened under one directory, by this process's audit
    events (``open`` is raised by every os.open and built-in open)."""

    _active: OpenCounter | None = None
    _installed = False

    def __init__(self, under: Path) -> None:
        self.under = str(under) + os.sep
        self.opened: list[str] = []

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        counter = cls._active
        if counter is not None and event == "open" and isinstance(args[0], str) \
                and args[0].startswith(counter.under):
            counter.opened.append(args[0])

    def __enter__(self) -> OpenCounter:
        if not OpenCounter._installed:
            sys.addaudithook(OpenCounter._hook)  # audit hooks cannot be removed: gated instead
            OpenCounter._installed = True
        OpenCounter._active = self
        return self

    def __exit__(self, *exc: object) -> None:
        OpenCounter._active = None


def _age(folder: Path, ns_ago: int = HOUR_NS) -> None:
    """Give every file an mtime well in the past: its cache entry is not racy."""
    when = time.time_ns() - ns_ago
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(when, when))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = write_tree(tmp_path / "notes", {
        f"n{i:02}.md": markdown_doc(f"Note {i}", f"topic{i}", "shared") for i in range(12)})
    _age(folder)
    return folder


def _sync(kb: Path, folder: Path, **kwargs: object) -> api.SyncReport:
    return api.sync(str(kb), [str(folder)], Progress(), jobs=1, **kwargs)


def _reasons(report: api.AddReport) -> set[str]:
    return {s.reason for s in report.skipped}


def test_an_unchanged_resync_opens_no_file_and_rehash_reads_them_all(
        kb: Path, folder: Path) -> None:
    assert len(_sync(kb, folder).added) == 12
    with OpenCounter(folder) as counter:
        report = _sync(kb, folder)
    assert counter.opened == []
    assert len(report.skipped) == 12 and _reasons(report) == {"unchanged"}
    with OpenCounter(folder) as counter:
        report = api.add(str(kb), [str(folder)], Progress(), jobs=1)
    assert counter.opened == [] and _reasons(report) == {"unchanged"}
    with OpenCounter(folder) as counter:
        report = _sync(kb, folder, rehash=True)
    assert len(set(counter.opened)) == 12
    assert _reasons(report) == {"duplicate"}


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(kb: Path, folder: Path) -> None:
    """ctime is in the fingerprint: restoring the mtime (as some tools do)
    cannot hide an edit."""
    _sync(kb, folder)
    path = folder / "n03.md"
    before = path.stat()
    text = path.read_text()
    path.write_text(text.replace("topic3", "topicX"))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    report = _sync(kb, folder)
    assert [n for n, _ in report.updated] == ["n03"]
    assert "topicX" in api.show(str(kb), "n03", Progress()).source_path.read_text()


def test_a_racily_clean_entry_is_hashed_again(kb: Path, folder: Path) -> None:
    # mtimes just ahead of the clock: whatever a first sync records is racy.
    _age(folder, ns_ago=-RACY_NS // 4)
    _sync(kb, folder)
    with OpenCounter(folder) as counter:
        report = _sync(kb, folder)
    assert len(set(counter.opened)) == 12  # not trusted: read again
    assert _reasons(report) == {"duplicate"}
    verify_ok(kb)


def test_the_racy_rule_at_the_boundary(kb: Path) -> None:
    registry = Registry.open(kb / ".openkb" / "kb.sqlite")
    try:
        mtime = 10**18
        entry = ScanEntry(0, "/x/a.md", "a.md", 5, mtime, dev=1, ino=2, ctime_ns=mtime)
        for recorded, trusted in ((mtime, False), (mtime + RACY_NS - 1, False),
                                  (mtime + RACY_NS, True), (mtime - 1, False)):
            registry.record_file_stats([("/x/a.md", FileStat(1, 2, 5, mtime, mtime, "s",
                                                             recorded))])
            cache = StatCache(registry, [entry], rehash=False)
            assert (cache.fresh_sha(entry) == "s") is trusted, recorded - mtime
        changed = ScanEntry(0, "/x/a.md", "a.md", 5, mtime, dev=1, ino=3, ctime_ns=mtime)
        assert cache.fresh_sha(changed) is None  # another inode: another file
    finally:
        registry.close()


def test_removed_origins_leave_the_cache(kb: Path, folder: Path) -> None:
    _sync(kb, folder)
    (folder / "n00.md").unlink()
    _sync(kb, folder)
    with sqlite3.connect(kb / ".openkb" / "kb.sqlite") as conn:
        origins = {o for (o,) in conn.execute("SELECT origin FROM file_stats")}
    assert str(folder / "n00.md") not in origins and len(origins) == 11


@pytest.fixture
def old_kb(tmp_path: Path) -> Iterator[Path]:
    """A KB written by openkb at 339f44c (before the stat cache)."""
    with tarfile.open(OLD_FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    yield tmp_path / "kb-339f44c"


def test_a_kb_from_before_the_stat_cache_is_upgraded_and_uses_it(old_kb: Path,
                                                                   folder: Path) -> None:
    with sqlite3.connect(old_kb / ".openkb" / "kb.sqlite") as conn:
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'file_stats'"
                                ).fetchall()
    assert {r.name for r in api.list_documents(str(old_kb), Progress())} == {"alpha", "beta"}
    verify_ok(old_kb)
    with sqlite3.connect(old_kb / ".openkb" / "kb.sqlite") as conn:
        assert ("sync-stat-cache",) in conn.execute("SELECT name FROM migrations").fetchall()
    assert len(_sync(old_kb, folder).added) == 12
    with OpenCounter(folder) as counter:
        assert _reasons(_sync(old_kb, folder)) == {"unchanged"}
    assert counter.opened == []
    verify_ok(old_kb)


def test_holders_of_answers_alike_for_a_few_contents_and_for_most(kb: Path,
                                                                  tmp_path: Path) -> None:
    """Asked about most of the KB, holders_of reads the table once instead of
    looking each content up; both ways must give the same names, misses too."""
    docs = write_tree(tmp_path / "many", {f"n{i}.md": markdown_doc(f"Note {i}", f"topic{i}")
                                          for i in range(12)})
    api.add(str(kb), [str(docs)], Progress(), jobs=1)
    registry = Registry.open_for_reading(kb / ".openkb" / "kb.sqlite")
    try:
        held = {row.sha256: row.name for row in registry.documents()}
        assert len(held) == 12
        missing = "0" * 64
        assert registry.holders_of([*held, missing]) == held  # one pass over the table
        few = dict(list(held.items())[:1])
        assert registry.holders_of([*few, missing]) == few  # looked up one by one
    finally:
        registry.close()
