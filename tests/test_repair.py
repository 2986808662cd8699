"""`openkb verify` finds damage and names each problem with a code;
`verify --repair` mends what the KB's own data allows and reports the rest,
never deleting an original: orphans go to .openkb/quarantine/<time>/."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import markdown_doc, openkb_in_process, run_openkb, verify_ok, write_tree

from openkb import api
from openkb.progress import Progress

PROBLEM_KEYS = {"code", "path", "message", "repaired", "journal"}
REPORT_KEYS = {"problems", "documents", "concepts", "files_checked", "repaired",
               "llm_cache_unused", "llm_cache_pruned"}


@pytest.fixture
def filled(kb: Path, sample_docs: Path) -> Path:
    report = api.add(str(kb), [str(sample_docs)], Progress(), jobs=1)
    assert not report.failed
    return kb


def _verify(kb: Path, *args: str) -> tuple[int, dict]:
    result = openkb_in_process("--kb", str(kb), "verify", "--json", *args)
    report = json.loads(result.out)
    assert set(report) == REPORT_KEYS, report
    for problem in report["problems"]:
        assert set(problem) == PROBLEM_KEYS and problem["code"] and problem["message"], problem
    return result.code, report


def _codes(report: dict) -> set[str]:
    return {p["code"] for p in report["problems"]}


AREAS = ("raw", "wiki", "attic", ".openkb/journal", ".openkb/staging", ".openkb/quarantine")


def _files(kb: Path) -> dict[str, str]:
    """Every file of the KB's trees, journals and staging, hashed (read
    without openkb, so nothing recovers). SQLite's files and the lock
    holder record are left out: opening the registry may checkpoint it."""
    return {str(p.relative_to(kb)): hashlib.sha256(p.read_bytes()).hexdigest()
            for area in AREAS for p in sorted((kb / area).rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _search_docs(kb: Path, query: str) -> set[str]:
    return {hit.doc for hit in api.search(str(kb), query, Progress())}


# -- verify alone --------------------------------------------------------------------


def test_verify_reports_every_problem_with_a_code_and_changes_nothing(filled: Path) -> None:
    (filled / "raw" / "stray.pdf").write_bytes(b"%PDF-1.4 someone else's file")
    (filled / "wiki" / "concepts" / "attention-heads.md").unlink()
    (filled / "wiki" / "index.md").write_text("my own index\n")
    (filled / "wiki" / "summaries" / "alpha.md").write_text("edited\n")
    (filled / "wiki" / "sources" / "beta.md").unlink()
    with sqlite3.connect(filled / ".openkb" / "kb.sqlite") as conn:
        conn.execute("DELETE FROM chunks_fts WHERE rowid IN "
                     "(SELECT id FROM chunks WHERE doc = 'gamma')")
    before = _files(filled)
    code, report = _verify(filled)
    assert code == 1 and not report["repaired"]
    assert not any(p["repaired"] for p in report["problems"])
    by_path = {p["path"]: p["code"] for p in report["problems"]}
    assert by_path["raw/stray.pdf"] == "orphan"
    assert by_path["wiki/concepts/attention-heads.md"] == "concept"
    assert by_path["wiki/index.md"] == "index-md"
    assert by_path["wiki/summaries/alpha.md"] == "changed-summary"
    assert by_path["wiki/sources/beta.md"] == "missing-source"
    assert "index" in _codes(report)
    text = openkb_in_process("--kb", str(filled), "verify")
    assert text.code == 1 and "FAILED" in text.out
    for path, code in by_path.items():
        assert f"{code}: {path}" in text.out
    assert _files(filled) == before  # verify repairs nothing
    code, report = _verify(filled, "--repair")
    assert code == 0 and report["repaired"] and all(p["repaired"] for p in report["problems"])
    verify_ok(filled)


def test_verify_reports_an_unfinished_transaction_without_touching_it(filled: Path,
                                                                      tmp_path: Path) -> None:
    extra = write_tree(tmp_path / "extra", {"new.md": markdown_doc("New", "attention heads")})
    crashed = run_openkb("--kb", str(filled), "add", str(extra),
                         env={"OPENKB_CRASH_AT": "compile.after"})
    assert crashed.returncode == -9
    assert (filled / "raw" / "new.md").exists()  # published, not committed
    before = _files(filled)
    code, report = _verify(filled)
    assert code == 1 and "journal" in _codes(report)
    (journal,) = (filled / ".openkb" / "journal").glob("*.json")
    assert (filled / ".openkb" / "journal" / journal.stem).is_dir()
    paths = {p["path"] for p in report["problems"]}
    assert f".openkb/journal/{journal.stem}" not in paths  # its backups, not a leftover
    assert _files(filled) == before  # not rolled back: verify only looks
    code, report = _verify(filled, "--repair")  # repair recovers first
    assert code == 0
    assert not (filled / "raw" / "new.md").exists()
    assert not list((filled / ".openkb" / "journal").iterdir())
    verify_ok(filled)


# -- orphans ---------------------------------------------------------------------


def test_orphans_are_quarantined_not_deleted(filled: Path) -> None:
    strays = {"raw/stray.pdf": b"%PDF-1.4 someone else's file",
              "wiki/sources/stray.md": b"# stray source\n",
              "wiki/summaries/stray.md": b"# stray summary\n"}
    for rel, data in strays.items():
        (filled / rel).write_bytes(data)
    code, report = _verify(filled)
    assert code == 1 and _codes(report) == {"orphan"}
    assert {p["path"] for p in report["problems"]} == set(strays)
    code, report = _verify(filled, "--repair")
    assert code == 0 and all(p["repaired"] for p in report["problems"])
    (stamp,) = (filled / ".openkb" / "quarantine").iterdir()
    assert time.strptime(stamp.name[:15], "%Y%m%dT%H%M%S")
    for rel, data in strays.items():
        assert not (filled / rel).exists()
        assert (stamp / rel).read_bytes() == data  # same bytes, same relative place
    verify_ok(filled)


def test_quarantine_never_overwrites_an_earlier_orphan(filled: Path) -> None:
    """Quarantine folders are named by the second: two repairs in one second
    must not share a folder."""
    quarantine = filled / ".openkb" / "quarantine"
    for _ in range(5):
        while time.time() % 1 > 0.3:  # start early in a wall-clock second
            time.sleep(0.01)
        for content in ("first stray", "second stray"):
            (filled / "raw" / "stray.md").write_text(content)
            assert api.verify(str(filled), Progress(), repair=True).ok
        if len({folder.name[:15] for folder in quarantine.iterdir()}) == 1:
            break  # both in one second: the case this test is about
        shutil.rmtree(quarantine)  # a slow machine crossed a second: again
    else:
        pytest.fail("five tries and never two repairs within one wall-clock second")
    kept = sorted(p.read_text() for p in quarantine.rglob("stray.md"))
    assert kept == ["first stray", "second stray"]


def test_a_stray_page_among_the_concepts_is_quarantined(filled: Path) -> None:
    (filled / "wiki" / "concepts" / "my-notes.md").write_text("# my own notes\n")
    assert _verify(filled)[0] == 1
    assert _verify(filled, "--repair")[0] == 0
    kept = list((filled / ".openkb" / "quarantine").rglob("my-notes.md"))
    assert [p.read_text() for p in kept] == ["# my own notes\n"]


# -- pages -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete-concept", "edit-concept", "edit-index",
                                    "delete-index", "edit-summary", "delete-summary"])
def test_pages_are_rendered_again(filled: Path, damage: str) -> None:
    target = {"delete-concept": "wiki/concepts/attention-heads.md",
              "edit-concept": "wiki/concepts/transformer-layers.md",
              "edit-index": "wiki/index.md", "delete-index": "wiki/index.md",
              "edit-summary": "wiki/summaries/alpha.md",
              "delete-summary": "wiki/summaries/delta.md"}[damage]
    path = filled / target
    original = path.read_bytes()
    if damage.startswith("delete"):
        path.unlink()
    else:
        path.write_text("edited by hand\n")
    code, report = _verify(filled)
    assert code == 1 and target in {p["path"] for p in report["problems"]}
    code, report = _verify(filled, "--repair")
    assert code == 0, report
    assert path.read_bytes() == original
    verify_ok(filled)


# -- search index -----------------------------------------------------------------------


def _damage_index(kb: Path, damage: str) -> None:
    conn = sqlite3.connect(kb / ".openkb" / "kb.sqlite")
    statements = {
        "delete-fts-rows": ["DELETE FROM chunks_fts WHERE rowid IN "
                            "(SELECT id FROM chunks WHERE doc = 'alpha')"],
        "delete-chunk-rows": ["DELETE FROM chunks WHERE doc = 'alpha'"],
        "empty-fts": ["DROP TABLE chunks_fts",
                      "CREATE VIRTUAL TABLE chunks_fts USING fts5 (heading, body)"],
        "drop-fts": ["DROP TABLE chunks_fts"],
        "corrupt-fts-shadow": ["DELETE FROM chunks_fts_data WHERE id > 1"],
    }[damage]
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("damage", [
    "delete-fts-rows", "delete-chunk-rows", "empty-fts", "drop-fts", "corrupt-fts-shadow",
])
def test_a_damaged_search_index_is_rebuilt_from_sources(filled: Path, damage: str) -> None:
    assert "alpha" in _search_docs(filled, "attention heads")
    _damage_index(filled, damage)
    code, report = _verify(filled)
    assert code == 1 and _codes(report) & {"index", "sqlite"}
    assert _verify(filled, "--repair")[0] == 0
    verify_ok(filled)
    assert _search_docs(filled, "attention heads") >= {"alpha", "beta", "delta"}
    assert _search_docs(filled, "gradient descent") >= {"beta", "gamma"}


# -- sources and originals ------------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete", "edit"])
def test_a_lost_source_is_converted_again_from_raw(filled: Path, damage: str) -> None:
    source = filled / "wiki" / "sources" / "beta.md"
    original = source.read_bytes()
    if damage == "delete":
        source.unlink()
    else:
        source.write_text("someone rewrote this\n")
    code, report = _verify(filled)
    expected = {"delete": "missing-source", "edit": "changed-source"}[damage]
    assert code == 1 and expected in _codes(report)
    assert _verify(filled, "--repair")[0] == 0
    assert source.read_bytes() == original
    assert "beta" in _search_docs(filled, "gradient descent")
    verify_ok(filled)


@pytest.mark.parametrize("damage", ["delete", "edit"])
def test_a_lost_original_is_reported_not_invented(filled: Path, damage: str) -> None:
    raw = filled / "raw" / "gamma.txt"
    if damage == "delete":
        raw.unlink()
    else:
        raw.write_text("someone else's text now\n")
    before = _files(filled)
    code, report = _verify(filled, "--repair")
    assert code == 1
    lost = [p for p in report["problems"] if p["path"] == "raw/gamma.txt"]
    assert [p["code"] for p in lost] == ["missing-raw" if damage == "delete" else "changed-raw"]
    assert not lost[0]["repaired"]
    assert _files(filled) == before  # the original is neither deleted nor rewritten
    text = openkb_in_process("--kb", str(filled), "verify", "--repair")
    assert text.code == 1
    assert "raw/gamma.txt" in text.out and "FAILED" in text.out
    assert os.path.exists(filled / "wiki" / "sources" / "gamma.md")  # the rest still there


# -- what a crash leaves besides a journal -----------------------------------------------


def _crash_before_the_journal(kb: Path, tmp_path: Path) -> None:
    """An add SIGKILLed just before its first journal: its staging dir and run
    record stay, no journal does."""
    extra = write_tree(tmp_path / "extra", {"new.md": markdown_doc("New", "attention heads")})
    crashed = run_openkb("--kb", str(kb), "add", str(extra),
                         env={"OPENKB_CRASH_AT": "journal.before"})
    assert crashed.returncode == -9
    assert list((kb / ".openkb" / "staging").iterdir())


def test_verify_reports_leftover_directories(filled: Path, tmp_path: Path) -> None:
    _crash_before_the_journal(filled, tmp_path)
    (filled / ".openkb" / "journal" / "00000000000000aa00000001").mkdir()
    code, report = _verify(filled)
    assert code == 1
    leftovers = {p["path"].split("/")[1] for p in report["problems"] if p["code"] == "leftover"}
    assert leftovers == {"staging", "journal"}
    assert _verify(filled, "--repair")[0] == 0
    assert not list((filled / ".openkb" / "staging").iterdir())
    assert not list((filled / ".openkb" / "journal").iterdir())
    verify_ok(filled)


@pytest.mark.parametrize("where", ["before-the-journal", "inside-the-journal-write"])
def test_list_after_a_crash_leaves_nothing_for_verify(filled: Path, tmp_path: Path,
                                                      where: str) -> None:
    _crash_before_the_journal(filled, tmp_path)
    if where == "inside-the-journal-write":
        # What fsio.write_atomic leaves when killed before its rename.
        (run,) = (filled / ".openkb" / "staging").iterdir()
        dead_pid = run.name.split("-")[0]
        temp = f".00000000000000aa00000001.json.openkb-tmp-{dead_pid}-0"
        (filled / ".openkb" / "journal" / temp).write_text('{"version": 1, "txid": "000')
    assert openkb_in_process("--kb", str(filled), "list").code == 0
    assert _verify(filled)[0] == 0
    assert not list((filled / ".openkb" / "staging").iterdir())
    assert not list((filled / ".openkb" / "journal").iterdir())
