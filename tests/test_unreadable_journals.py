"""A journal file that holds no journal, as a power cut can leave one.

On a filesystem that writes metadata before data (ext4 data=writeback, XFS),
a power cut can keep a rename and lose the bytes behind it. openkb never
replaces a journal with unsynced bytes any more, but KBs written by earlier
releases, and disks that fail, can still hold an empty or torn journal.
Recovery decides such a journal by the txid in its name: committed means its
cleanup is finished from what is on disk; not committed means it never
became durable and so changed nothing, and it is removed with a log line.
No command may be wedged by one, and every hint `verify` prints is true.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import markdown_doc, openkb_in_process, run_openkb, tree_hash, verify_ok, write_tree

from openkb import api
from openkb.progress import Progress

TXID = "00000000000000aa00000001"
TORN = [b"", b"\0" * 4096, b'{"version": 1, "txid": "00000000000000aa0000', b"[1, 2, 3]",
        b'{"version": 1}', b"\xff\xfe garbage"]


@pytest.fixture
def filled(kb: Path, tmp_path: Path) -> Path:
    docs = write_tree(tmp_path / "docs", {
        "one.md": markdown_doc("One", "apples", "pears"),
        "two.md": markdown_doc("Two", "apples", "pears"),
    })
    assert not api.add(str(kb), [str(docs)], Progress(), jobs=1).failed
    return kb


def _journal_dir(kb: Path) -> Path:
    return kb / ".openkb" / "journal"


def _verify_messages(kb: Path) -> list[str]:
    return [p.message for p in api.verify(str(kb), Progress()).problems if p.code == "journal"]


@pytest.mark.parametrize("content", TORN, ids=["empty", "zeros", "torn", "list", "no-fields",
                                                "not-utf8"])
def test_an_unreadable_journal_that_never_committed_is_removed(
        filled: Path, tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(filled, twin)
    journal = _journal_dir(filled) / f"{TXID}.json"
    journal.write_bytes(content)
    (message,) = _verify_messages(filled)
    assert "never committed" in message and "removes it" in message
    extra = write_tree(tmp_path / "extra", {"three.md": markdown_doc("Three", "plums")})
    with caplog.at_level(logging.WARNING, logger="openkb"):
        report = api.add(str(filled), [str(extra)], Progress(), jobs=1)
    assert not report.failed and [name for name, _ in report.added] == ["three"]
    assert not journal.exists()
    assert any(TXID in r.getMessage() and "changed nothing" in r.getMessage()
               for r in caplog.records)
    verify_ok(filled)
    api.add(str(twin), [str(extra)], Progress(), jobs=1)
    assert tree_hash(filled) == tree_hash(twin)


@pytest.mark.parametrize("command", [["recover"], ["verify", "--repair"], ["remove", "one"],
                                     ["recompile"], ["list"]])
def test_every_command_finishes_an_empty_journal_of_a_committed_transaction(
        filled: Path, tmp_path: Path, command: list[str]) -> None:
    """The defect a power cut found: a crash in "mark committed" left the
    journal empty, and every command refused it from then on."""
    extra = write_tree(tmp_path / "extra", {"three.md": markdown_doc("Three", "plums", "pears")})
    crashed = run_openkb("--kb", str(filled), "add", str(extra),
                         env={"OPENKB_CRASH_AT": "mark_committed.before"})
    assert crashed.returncode == -9
    (journal,) = _journal_dir(filled).glob("*.json")
    backups = _journal_dir(filled) / journal.stem
    assert backups.is_dir() and any(backups.iterdir())
    journal.write_bytes(b"")  # what the power cut left of it
    (message,) = _verify_messages(filled)
    assert "committed transaction" in message and "finishes its cleanup" in message
    done = openkb_in_process("--kb", str(filled), *command)
    assert done.code == 0, done.err
    assert "refusing" not in done.err
    assert not journal.exists() and not backups.exists()
    verify_ok(filled)
    names = {row.name for row in api.list_documents(str(filled), Progress())}
    assert "three" in names


def test_recover_says_what_it_did_with_an_unreadable_journal(filled: Path) -> None:
    (_journal_dir(filled) / f"{TXID}.json").write_bytes(b"")
    result = openkb_in_process("--kb", str(filled), "recover", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["discarded"] == [TXID]


def test_a_journal_in_the_previous_releases_committed_format_rolls_forward(
        filled: Path, tmp_path: Path) -> None:
    """Releases before this one rewrote the journal with status "committed"."""
    extra = write_tree(tmp_path / "extra", {"three.md": markdown_doc("Three", "plums")})
    assert run_openkb("--kb", str(filled), "add", str(extra),
                      env={"OPENKB_CRASH_AT": "mark_committed.before"}).returncode == -9
    (journal,) = _journal_dir(filled).glob("*.json")
    record = json.loads(journal.read_bytes())
    record["status"] = "committed"
    journal.write_text(json.dumps(record, indent=2))
    report = api.recover(str(filled), Progress())
    assert report.rolled_forward == [journal.stem]
    verify_ok(filled)


def test_a_stray_json_file_in_the_journal_dir_is_not_a_journal(filled: Path) -> None:
    """Only names openkb gives a journal are journals; anything else is
    reported, quarantined by repair, and blocks nothing."""
    stray = _journal_dir(filled) / "notes.json"
    stray.write_text("{}")
    report = api.verify(str(filled), Progress())
    assert [(p.code, p.path) for p in report.problems] == [
        ("leftover", ".openkb/journal/notes.json")]
    assert api.recover(str(filled), Progress()).rolled_back == []
    assert api.verify(str(filled), Progress(), repair=True).ok
    assert not stray.exists()
    verify_ok(filled)
