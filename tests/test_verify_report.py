"""`openkb verify` after a crash says what happened in a screenful.

A crash in the middle of a large transaction leaves hundreds of paths
mid-flight: the documents a `remove` moved aside are "missing" until the
next command rolls it back. Those problems belong under the pending journal
that explains them, as one line that names the transaction; any other kind
of problem with many entries is shown as a count and the first few.
``--json`` gives every entry, attributed; ``--verbose`` prints every entry.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import markdown_doc, run_openkb, verify_ok, write_tree

from openkb import api
from openkb.progress import Progress

REMOVED = 60
KEPT = 2


@pytest.fixture
def crashed_remove(kb: Path, tmp_path: Path) -> tuple[Path, str]:
    """A KB whose `openkb remove` of 60 documents was killed right after it
    moved their files aside; returns (KB, txid of the pending journal)."""
    docs = write_tree(tmp_path / "docs", {
        f"note-{n:02d}.md": markdown_doc(f"Note {n}", f"topic {n % 7}", "shared things")
        for n in range(REMOVED + KEPT)})
    report = api.add(str(kb), [str(docs)], Progress(), jobs=1)
    assert len(report.added) == REMOVED + KEPT
    names = [f"note-{n:02d}" for n in range(REMOVED)]
    crashed = run_openkb("--kb", str(kb), "remove", *names,
                         env={"OPENKB_CRASH_AT": "publish.after"})
    assert crashed.returncode == -9, crashed.stderr
    (journal,) = (kb / ".openkb" / "journal").glob("*.json")
    return kb, journal.stem


def _verify_json(cli, kb: Path, *args: str) -> dict:
    result = cli("--kb", str(kb), "verify", "--json", *args)
    assert result.code in (0, 1)
    return json.loads(result.out)


def test_a_crashed_remove_is_one_journal_line_not_a_flood(cli, crashed_remove) -> None:
    kb, txid = crashed_remove
    result = cli("--kb", str(kb), "verify")
    assert result.code == 1
    lines = result.out.splitlines()
    assert len(lines) <= 30, result.out
    (line,) = [line for line in lines if "remove" in line and f"{REMOVED} document" in line]
    assert txid in line and "pid" in line and " ago" in line
    assert "rolls it back" in line  # what finishes it, and it is true (below)
    # How many paths it holds mid-flight: raw, source and summary of each.
    assert f"{3 * REMOVED} path" in result.out
    assert "FAILED" in lines[-1]
    assert "missing-raw: raw/" not in result.out  # the entries are under --verbose

    # What the journal line promises: the next command rolls it back.
    assert run_openkb("--kb", str(kb), "list").returncode == 0
    verify_ok(kb)
    assert len(api.list_documents(str(kb), Progress())) == REMOVED + KEPT


def test_json_attributes_every_problem_and_verbose_lists_every_one(cli, crashed_remove) -> None:
    kb, txid = crashed_remove
    report = _verify_json(cli, kb)
    problems = report["problems"]
    assert all("journal" in p for p in problems)
    by_code: dict[str, list[dict]] = {}
    for problem in problems:
        by_code.setdefault(problem["code"], []).append(problem)
    for code in ("missing-raw", "missing-source", "missing-summary"):
        assert len(by_code[code]) == REMOVED
        assert {p["journal"] for p in by_code[code]} == {txid}
    (journal_problem,) = by_code["journal"]
    assert journal_problem["journal"] == txid
    assert journal_problem["path"] == f".openkb/journal/{txid}.json"

    verbose = cli("--kb", str(kb), "verify", "--verbose")
    assert verbose.code == 1
    for problem in problems:
        assert f"{problem['code']}: {problem['path']}" in verbose.out


def test_only_what_the_journal_names_is_attributed_to_it(cli, crashed_remove) -> None:
    kb, txid = crashed_remove
    kept = f"note-{REMOVED:02d}"
    with sqlite3.connect(kb / ".openkb" / "kb.sqlite") as conn:
        conn.execute("DELETE FROM chunks_fts WHERE rowid IN "
                     "(SELECT id FROM chunks WHERE doc IN ('note-00', ?))", (kept,))
        conn.execute("DELETE FROM chunks WHERE doc IN ('note-00', ?)", (kept,))
    sources = kb / "wiki" / "sources"
    (sources / ".note-01.md.openkb-tmp-1-1").write_text("beside a target of the journal")
    (sources / f".{kept}.md.openkb-tmp-1-2").write_text("beside a file no journal names")
    (kb / "raw" / "stray.md").write_text("someone's own file")
    journal_of = {(p["code"], p["path"]): p["journal"] for p in _verify_json(cli, kb)["problems"]}
    assert journal_of[("index", "note-00")] == txid  # a document the journal names
    assert journal_of[("index", kept)] is None
    assert journal_of[("leftover", "wiki/sources/.note-01.md.openkb-tmp-1-1")] == txid
    assert journal_of[("leftover", f"wiki/sources/.{kept}.md.openkb-tmp-1-2")] is None
    assert journal_of[("orphan", "raw/stray.md")] is None
    text = cli("--kb", str(kb), "verify").out
    assert "orphan: raw/stray.md" in text  # few problems of a kind: each one shown


def test_many_problems_of_one_kind_are_counted_and_sampled(cli, kb: Path) -> None:
    strays = [f"raw/stray-{n:02d}.md" for n in range(25)]
    for rel in strays:
        (kb / rel).write_text("not openkb's\n")
    result = cli("--kb", str(kb), "verify")
    assert result.code == 1
    assert len(result.out.splitlines()) <= 12, result.out
    assert "25" in result.out and "orphan" in result.out
    assert sum(rel in result.out for rel in strays) == 5
    assert "--verbose" in result.out  # says how to see the rest

    verbose = cli("--kb", str(kb), "verify", "--verbose").out
    assert all(rel in verbose for rel in strays)
    problems = _verify_json(cli, kb)["problems"]
    assert sorted(p["path"] for p in problems) == strays
    assert all(p["journal"] is None for p in problems)
