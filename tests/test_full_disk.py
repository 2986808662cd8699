"""A real full disk (a small tmpfs), not an injected errno: ENOSPC from the
kernel in staging, in the commit and in SQLite itself.

Needs root (or CAP_SYS_ADMIN) to mount; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Run, markdown_doc, openkb_in_process, write_tree

from openkb import api

DISK_FULL = ("No space left on device", "disk is full")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _openkb(kb: Path, *args: str) -> Run:
    """The CLI in-process: an error it does not turn into a message and an
    exit code raises here and fails the test."""
    return openkb_in_process("--kb", str(kb), *args)


def _names(kb: Path) -> set[str]:
    listing = _openkb(kb, "list", "--json")
    assert listing.code == 0, listing.err
    return {d["name"] for d in json.loads(listing.out)}


def _fill(disk: Path) -> Path:
    """Take every free block of ``disk``; return the file to delete to free them."""
    ballast = disk / "someone-elses-file"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return ballast


def _files(kb: Path) -> dict[str, str]:
    return {str(p.relative_to(kb)): hashlib.sha256(p.read_bytes()).hexdigest()
            for area in ("raw", "wiki", "attic") for p in sorted((kb / area).rglob("*"))
            if p.is_file()}


def _big_docs(root: Path, count: int) -> Path:
    # ~120 KB of distinct text each: thirty cannot fit in 2 MB once stored
    # twice (raw, source) and staged on the way.
    return write_tree(root, {
        f"doc-{i:02d}.md": markdown_doc(f"Doc {i}", f"topic {i}", "shared theme",
                                        extra=" ".join(f"w{i}x{j}" for j in range(20_000)))
        for i in range(count)})


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.heavy)])
def test_running_out_of_space_fails_files_and_keeps_the_kb_usable(
        small_disk: Path, tmp_path: Path, jobs: str) -> None:
    kb = small_disk / "kb"
    api.init(str(kb))
    ballast = small_disk / "someone-elses-file"
    ballast.write_bytes(b"\0" * 256 * 1024)
    docs = _big_docs(tmp_path / "docs", 30)
    added = _openkb(kb, "add", "--json", "--jobs", jobs, str(docs))
    assert added.code == 1, added.out + added.err
    report = json.loads(added.out)
    assert report["failed"] and len(report["added"]) + len(report["failed"]) == 30
    for failure in report["failed"]:  # each file says why, and it is the disk
        assert any(cause in failure["reason"] for cause in DISK_FULL), failure
    assert any("No space left on device" in f["reason"] for f in report["failed"])
    present = _names(kb)
    assert present == {a["name"] for a in report["added"]}
    assert _openkb(kb, "verify").code == 0
    # With the disk still full even a remove may not journal itself: it
    # fails cleanly or succeeds. Once space is freed, the KB works as before.
    if present:
        _openkb(kb, "remove", sorted(present)[0])
        assert _openkb(kb, "verify").code == 0
    ballast.unlink()
    victims = sorted(_names(kb))[: max(1, len(present) // 2)] if _names(kb) else []
    if victims:
        assert _openkb(kb, "remove", *victims).code == 0
    small = write_tree(tmp_path / "small", {"small.md": markdown_doc("Small", "apples")})
    assert _openkb(kb, "add", str(small)).code == 0
    assert "small" in _names(kb)
    assert _openkb(kb, "verify").code == 0


@pytest.fixture
def full_kb(small_disk: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A KB with three documents on a disk with no free block left."""
    kb = small_disk / "kb"
    api.init(str(kb))
    docs = write_tree(tmp_path / "docs", {
        f"{n}.md": markdown_doc(n.title(), "apples", "pears") for n in ("one", "two", "three")})
    assert _openkb(kb, "add", str(docs)).code == 0
    return kb, _fill(small_disk), _files(kb)


def test_writers_on_a_full_disk_fail_and_change_nothing(
        full_kb: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    kb, ballast, before = full_kb
    more = write_tree(tmp_path / "more", {"four.md": markdown_doc("Four", "apples")})
    for args in (["recompile"], ["remove", "one"], ["add", str(more)],
                 ["remove", "--keep-raw", "two"]):
        result = _openkb(kb, *args)
        assert result.code == 1, (args, result.out, result.err)
        assert _files(kb) == before, args
    ballast.unlink()
    assert _openkb(kb, "verify").code == 0
    assert _names(kb) == {"one", "two", "three"}
    assert _openkb(kb, "remove", "one").code == 0
    assert _openkb(kb, "add", str(more)).code == 0
    assert _names(kb) == {"two", "three", "four"}
    assert _openkb(kb, "verify").code == 0


def test_a_full_disk_is_named_and_reads_still_work(
        full_kb: tuple[Path, Path, dict[str, str]]) -> None:
    kb, _, _ = full_kb
    removed = _openkb(kb, "remove", "one")
    assert removed.code == 1
    assert any(cause in removed.err for cause in DISK_FULL), removed.err
    assert _names(kb) == {"one", "two", "three"}
    assert _openkb(kb, "search", "apples").code == 0
