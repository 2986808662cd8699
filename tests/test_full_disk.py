"""A real full disk (a small tmpfs), not an injected errno: ENOSPC from the
kernel in staging, in the commit and in SQLite itself.

Needs root (or CAP_SYS_ADMIN) to mount; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    Run,
    corpus_dir,
    markdown_doc,
    openkb_in_process,
    run_openkb,
    write_tree,
)

from openkb import api

DISK_FULL = ("No space left on device", "disk is full")
OLD_FIXTURE = Path(__file__).parent / "fixtures" / "kb-339f44c.tar.gz"


@contextmanager
def _tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """2 MiB: too small for the disk reserve (8 MiB, made only when 16 are free)."""
    with _tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


@pytest.fixture
def reserve_disk(tmp_path: Path) -> Iterator[Path]:
    """24 MiB: room for a KB and its 8 MiB reserve."""
    with _tmpfs(tmp_path / "disk", "24m") as disk:
        yield disk


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
def test_running_out_of_space_stops_the_run_with_one_message(
        small_disk: Path, tmp_path: Path, jobs: str) -> None:
    kb = small_disk / "kb"
    api.init(str(kb))
    ballast = small_disk / "someone-elses-file"
    ballast.write_bytes(b"\0" * 256 * 1024)
    docs = _big_docs(tmp_path / "docs", 30)
    added = _openkb(kb, "add", "--json", "--jobs", jobs, str(docs))
    assert added.code == 1, added.out + added.err
    report = json.loads(added.out)
    # A full disk is not the files' failure: none is listed as failed, the
    # run stopped and says where it stood, once.
    assert report["failed"] == []
    stopped = report["out_of_space"]
    assert stopped["committed"] == len(report["added"]) < 30
    assert stopped["left_files"] == 30 - len(report["added"])
    assert stopped["left_bytes"] > 0 and stopped["needed_bytes"] >= stopped["left_bytes"]
    assert "free space and run the same command again" in stopped["message"]
    present = _names(kb)
    assert present == {a["name"] for a in report["added"]}
    # Nothing went into the failure ledger: the files were never tried.
    failures = _openkb(kb, "failures", "--json")
    assert failures.code == 0 and json.loads(failures.out) == []
    assert _openkb(kb, "verify").code == 0
    again = _openkb(kb, "add", "--jobs", jobs, str(docs))  # still full: the text report
    assert again.code == 1
    assert again.out.count("the disk is full") == 1 and "failed:" not in again.out, again.out
    assert "free space and run the same command again" in again.out
    assert json.loads(_openkb(kb, "failures", "--json").out) == []
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


# -- the reserve: removals run on a full disk, and free space ------------------

RESERVE_BYTES = 8 * 1048576


def _reserve(kb: Path) -> Path:
    return kb / ".openkb" / "reserve"


@pytest.fixture
def reserve_kb(reserve_disk: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A KB with four documents on a 24 MiB disk, its reserve in place."""
    kb = reserve_disk / "kb"
    api.init(str(kb))
    reserve = _reserve(kb).stat()
    # Allocated, not sparse: its blocks are taken from the disk now.
    assert reserve.st_size == RESERVE_BYTES and reserve.st_blocks * 512 >= RESERVE_BYTES
    docs = write_tree(tmp_path / "docs", {
        f"{n}.md": markdown_doc(n.title(), "apples", f"{n} pears", extra=f"{n} " * 3000)
        for n in ("one", "two", "three", "four")})
    assert _openkb(kb, "sync", str(docs)).code == 0
    return kb, docs


def test_remove_on_a_full_disk_runs_on_the_reserve_and_frees_space(
        reserve_kb: tuple[Path, Path], reserve_disk: Path) -> None:
    kb, _ = reserve_kb
    ballast = _fill(reserve_disk)
    removed = _openkb(kb, "remove", "one")
    assert removed.code == 0, removed.err
    assert "released openkb's 8 MiB reserve" in removed.err
    assert not _reserve(kb).exists()  # no room to make it again yet
    assert os.statvfs(reserve_disk).f_bavail * os.statvfs(reserve_disk).f_frsize > 1048576
    assert _names(kb) == {"two", "three", "four"}
    assert not (kb / "raw" / "one.md").exists()
    assert _openkb(kb, "verify").code == 0
    # Another removal on the same disk needs no reserve now: the space is there.
    assert _openkb(kb, "remove", "--keep-raw", "two").code == 0
    assert _openkb(kb, "verify").code == 0
    ballast.unlink()
    assert _openkb(kb, "recover").code == 0  # the next writer makes it again
    assert _reserve(kb).stat().st_size == RESERVE_BYTES


def test_sync_removals_on_a_full_disk(reserve_kb: tuple[Path, Path],
                                      reserve_disk: Path) -> None:
    kb, docs = reserve_kb
    (docs / "three.md").unlink()
    _fill(reserve_disk)
    synced = _openkb(kb, "sync", "--json", str(docs))
    assert synced.code == 0, synced.out + synced.err
    report = json.loads(synced.out)
    assert [r["name"] if isinstance(r, dict) else r for r in report["removed"]] == ["three"]
    assert _names(kb) == {"one", "two", "four"}
    assert _openkb(kb, "verify").code == 0


def test_without_a_reserve_a_removal_on_a_full_disk_fails_cleanly(
        reserve_kb: tuple[Path, Path], reserve_disk: Path) -> None:
    """What the reserve is for: the same removal, with ``disk_reserve_mb: 0``."""
    kb, _ = reserve_kb
    _reserve(kb).unlink()
    (kb / ".openkb" / "config.yaml").write_text("disk_reserve_mb: 0\n")
    before = _files(kb)
    ballast = _fill(reserve_disk)
    removed = _openkb(kb, "remove", "one")
    assert removed.code == 1 and any(cause in removed.err for cause in DISK_FULL)
    assert _files(kb) == before
    ballast.unlink()  # even verify cannot open the registry for writing until then
    assert _openkb(kb, "verify").code == 0
    assert not _reserve(kb).exists()


@pytest.mark.parametrize("point", ["journal.after", "publish.after", "compile.after",
                                   "registry_write.after", "mark_committed.cleaned"])
def test_a_removal_killed_on_a_full_disk_is_recovered_there(
        reserve_kb: tuple[Path, Path], reserve_disk: Path, point: str) -> None:
    kb, _ = reserve_kb
    ballast = _fill(reserve_disk)
    killed = run_openkb("--kb", str(kb), "remove", "one", env={"OPENKB_CRASH_AT": point})
    assert killed.returncode == -9, killed.stderr
    assert not _reserve(kb).exists()  # released before the commit began
    # The disk is still full; the next command finishes the removal either way.
    names = _names(kb)
    committed = point.startswith(("registry_write", "mark_committed"))
    assert names == ({"two", "three", "four"} if committed else {"one", "two", "three", "four"})
    assert _openkb(kb, "verify").code == 0
    if not committed:
        assert _openkb(kb, "remove", "one").code == 0
    ballast.unlink()
    assert _openkb(kb, "remove", "two").code == 0
    assert _reserve(kb).exists()
    assert _names(kb) == {"three", "four"}
    assert _openkb(kb, "verify").code == 0


def test_a_kb_from_before_the_reserve_gets_one_from_its_first_writer(tmp_path: Path) -> None:
    with tarfile.open(OLD_FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    kb = tmp_path / "kb-339f44c"
    assert not _reserve(kb).exists()
    assert _openkb(kb, "list").code == 0  # a reader leaves it as it is
    assert _openkb(kb, "recover").code == 0
    assert _reserve(kb).stat().st_size == RESERVE_BYTES
    assert _openkb(kb, "verify").code == 0
    assert _openkb(kb, "remove", "alpha").code == 0
    assert _openkb(kb, "verify").code == 0


@pytest.fixture
def many_gone(tmp_path: Path) -> Iterator[tuple[Path, Path, Path, set[str]]]:
    """The 654 RFC files synced into a KB on a 96 MiB disk, then 400 of them
    deleted and the disk filled: (kb, folder, disk, documents to remove)."""
    notes = tmp_path / "rfcs"
    shutil.copytree(corpus_dir("md-rfcs"), notes)
    with _tmpfs(tmp_path / "disk", "96m") as disk:
        kb = disk / "kb"
        api.init(str(kb))
        assert _openkb(kb, "sync", "--jobs", "2", str(notes)).code == 0
        gone = set(sorted(notes.rglob("*.md"))[:400])
        listed = json.loads(_openkb(kb, "list", "--json").out)
        held = {d["name"] for d in listed if Path(d["origin"]) in gone}
        assert len(held) >= 390  # a file or two may be a duplicate of another
        for path in gone:
            path.unlink()
        _fill(disk)
        yield kb, notes, disk, held


@pytest.mark.heavy
def test_a_sync_removing_more_than_the_reserve_has_room_for_goes_in_smaller_groups(
        many_gone: tuple[Path, Path, Path, set[str]], tmp_path: Path) -> None:
    """400 of the 654 RFC files gone at once, on a full disk: one transaction
    needs more than the 8 MiB reserve (SQLite's WAL for the index entries
    it deletes); halves, with the WAL given back between them, fit."""
    kb, notes, _, held = many_gone
    jsonl = tmp_path / "progress.jsonl"
    synced = _openkb(kb, "--progress-jsonl", str(jsonl), "sync", "--json",
                     "--max-delete", "100%", str(notes))
    assert synced.code == 0, synced.out + synced.err
    assert {r["name"] for r in json.loads(synced.out)["removed"]} == held
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    # All of them in one transaction did not fit: rolled back, then halves.
    assert any(e["event"] == "rollback" for e in events)
    assert sum(e["event"] == "committed" for e in events) > 1
    assert _openkb(kb, "verify").code == 0


@pytest.mark.heavy
@pytest.mark.parametrize("point", ["publish.after", "registry_write.after"])
def test_a_sync_killed_among_its_halves_on_a_full_disk_is_recovered_there(
        many_gone: tuple[Path, Path, Path, set[str]], point: str) -> None:
    kb, notes, _, held = many_gone
    sync = ("--kb", str(kb), "--quiet", "sync", "--max-delete", "100%", str(notes))
    # publish.after is first reached by the transaction of all 400 (renames
    # need no room; its index step will not fit), registry_write.after by
    # the first half that fits.
    killed = run_openkb(*sync, env={"OPENKB_CRASH_AT": point})
    assert killed.returncode == -9, killed.stderr
    left = _names(kb)  # the disk is still full; this recovers what was killed
    if point == "publish.after":
        assert held <= left
    else:
        assert 0 < len(left & held) < len(held)
    assert _openkb(kb, "verify").code == 0
    assert run_openkb(*sync).returncode == 0
    assert not _names(kb) & held
    assert _openkb(kb, "verify").code == 0


@pytest.mark.heavy
def test_a_watch_on_a_full_disk_says_so_keeps_watching_and_catches_up(
        small_disk: Path, tmp_path: Path) -> None:
    kb = small_disk / "kb"
    api.init(str(kb))
    ballast = small_disk / "someone-elses-file"
    ballast.write_bytes(b"\0" * 768 * 1024)
    docs = _big_docs(tmp_path / "docs", 8)
    jsonl = tmp_path / "watch.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKB_")}
    env.update(PYTHONPATH=str(ROOT), OPENKB_PROGRESS_JSONL=str(jsonl))
    log = (tmp_path / "watch.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "watch",
                             "--jobs", "1", "--debounce", "0.2", str(docs)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)

    def batches() -> list[dict]:
        if not jsonl.exists():
            return []
        return [e for e in map(json.loads, jsonl.read_text().splitlines())
                if e["event"] == "watch_batch" and e["kind"] == "done"]

    def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, f"{what}: {(tmp_path / 'watch.log').read_text()}"
            time.sleep(0.1)

    try:
        until(lambda: bool(batches()), "the catch-up sync")
        (first,) = batches()
        assert first["outcome"] == "disk_full", first
        assert "free space and run the same command again" in first["error"]
        assert first["counts"]["failed"] == 0 and first["counts"]["added"] < 8
        assert proc.poll() is None  # still watching
        assert json.loads(_openkb(kb, "failures", "--json").out) == []
        before = _names(kb)
        ballast.unlink()
        (docs / "doc-00.md").touch()  # an event: the next batch syncs the whole folder
        until(lambda: len(_names(kb)) > len(before), "the next batch adding more")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        output = (tmp_path / "watch.log").read_text()
        # Once per batch the disk stopped (the second may fill it again).
        stopped = sum(b.get("outcome") == "disk_full" for b in batches())
        assert output.count("the disk is full") == stopped, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert _openkb(kb, "verify").code == 0


@pytest.mark.parametrize("point", ["publish.after", "registry_write.after"])
def test_an_add_killed_while_the_disk_fills_is_recovered(small_disk: Path, tmp_path: Path,
                                                        point: str) -> None:
    kb = small_disk / "kb"
    api.init(str(kb))
    (small_disk / "someone-elses-file").write_bytes(b"\0" * 256 * 1024)
    docs = _big_docs(tmp_path / "docs", 30)
    killed = run_openkb("--kb", str(kb), "add", "--jobs", "1", str(docs),
                        env={"OPENKB_CRASH_AT": point})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    before = _names(kb)  # recovers, on the full disk
    assert _openkb(kb, "verify").code == 0
    again = _openkb(kb, "add", "--json", "--jobs", "1", str(docs))
    report = json.loads(again.out)
    assert report["failed"] == [] and report["out_of_space"] is not None
    assert _names(kb) == before | {a["name"] for a in report["added"]}
    assert json.loads(_openkb(kb, "failures", "--json").out) == []
    assert _openkb(kb, "verify").code == 0
