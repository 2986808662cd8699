"""`openkb verify` finds damage; `verify --repair` mends what the KB's own data
allows and reports the rest, never deleting an original."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_openkb, verify_ok

from openkb import api
from openkb.progress import Progress


@pytest.fixture
def filled(kb: Path, sample_docs: Path) -> Path:
    report = api.add(str(kb), [str(sample_docs)], Progress(), jobs=1)
    assert not report.failed
    return kb


def _verify(kb: Path, *args: str) -> tuple[int, dict]:
    result = run_openkb("--kb", str(kb), "verify", "--json", *args)
    return result.returncode, json.loads(result.stdout)


def _codes(report: dict) -> set[str]:
    return {p["code"] for p in report["problems"]}


def test_orphans_are_quarantined_not_deleted(filled: Path) -> None:
    (filled / "raw" / "stray.pdf").write_bytes(b"%PDF-1.4 someone else's file")
    (filled / "wiki" / "sources" / "stray.md").write_text("# stray\n")
    code, report = _verify(filled)
    assert code == 1 and _codes(report) == {"orphan"}
    code, report = _verify(filled, "--repair")
    assert code == 0 and all(p["repaired"] for p in report["problems"])
    quarantined = list((filled / ".openkb" / "quarantine").rglob("stray.*"))
    assert sorted(p.name for p in quarantined) == ["stray.md", "stray.pdf"]
    verify_ok(filled)


@pytest.mark.parametrize("damage", ["delete-concept", "edit-index", "edit-summary",
                                    "extra-concept"])
def test_pages_are_rendered_again(filled: Path, damage: str) -> None:
    wiki = filled / "wiki"
    if damage == "delete-concept":
        (wiki / "concepts" / "attention-heads.md").unlink()
    elif damage == "edit-index":
        (wiki / "index.md").write_text("my own index\n")
    elif damage == "edit-summary":
        (wiki / "summaries" / "alpha.md").write_text("edited\n")
    else:
        (wiki / "concepts" / "made-up.md").write_text("# made up\n")
    assert _verify(filled)[0] == 1
    code, _ = _verify(filled, "--repair")
    assert code == 0
    verify_ok(filled)


@pytest.mark.parametrize("damage", ["delete-rows", "drop-table"])
def test_a_damaged_search_index_is_rebuilt_from_sources(filled: Path, damage: str) -> None:
    conn = sqlite3.connect(filled / ".openkb" / "kb.sqlite")
    if damage == "delete-rows":
        conn.execute("DELETE FROM chunks WHERE doc = 'alpha'")
    else:
        conn.execute("DROP TABLE chunks_fts")
        conn.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5 (heading, body)")
    conn.commit()
    conn.close()
    code, report = _verify(filled)
    assert code == 1 and "index" in _codes(report)
    assert _verify(filled, "--repair")[0] == 0
    verify_ok(filled)
    assert {h.doc for h in api.search(str(filled), "attention heads", Progress())} >= {
        "alpha", "beta", "delta"}


def test_a_lost_source_is_converted_again_from_raw(filled: Path) -> None:
    source = filled / "wiki" / "sources" / "beta.md"
    original = source.read_text()
    source.unlink()
    assert _verify(filled)[0] == 1
    assert _verify(filled, "--repair")[0] == 0
    assert source.read_text() == original
    verify_ok(filled)


def test_a_lost_original_is_reported_not_invented(filled: Path) -> None:
    (filled / "raw" / "gamma.txt").unlink()
    code, report = _verify(filled, "--repair")
    assert code == 1
    lost = [p for p in report["problems"] if p["code"] == "missing-raw"]
    assert lost and not lost[0]["repaired"]
    text = run_openkb("--kb", str(filled), "verify")
    assert "raw/gamma.txt" in text.stdout and "FAILED" in text.stdout


def test_verify_reports_an_unfinished_transaction_without_touching_it(filled: Path,
                                                                      tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "new.md").write_text("# New\n\nnew words, new words\n")
    crashed = run_openkb("--kb", str(filled), "add", str(extra),
                         env={"OPENKB_CRASH_AT": "compile.after"})
    assert crashed.returncode == -9
    code, report = _verify(filled)
    assert code == 1 and "journal" in _codes(report)
    assert list((filled / ".openkb" / "journal").glob("*.json"))  # still there
    assert _verify(filled, "--repair")[0] == 0  # repair recovers first
    verify_ok(filled)
