"""The KB through the library API: add, re-add, update, remove, search, compile."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import markdown_doc, tree_hash, verify_ok, write_tree

from openkb import api
from openkb.errors import UnknownDocument
from openkb.layout import KBLayout
from openkb.progress import Progress


def add(kb: Path, *paths: Path, jobs: int = 1) -> api.AddReport:
    return api.add(str(kb), [str(p) for p in paths], Progress(), jobs=jobs)


def names(kb: Path) -> list[str]:
    return [row.name for row in api.list_documents(str(kb), Progress())]


def test_add_builds_a_consistent_kb(kb: Path, sample_docs: Path) -> None:
    report = add(kb, sample_docs)
    assert not report.failed, report.failed
    assert sorted(n for n, _ in report.added) == ["alpha", "beta", "delta", "gamma"]
    layout = KBLayout.at(kb)
    for name in ("alpha", "beta", "delta", "gamma"):
        assert (layout.root / layout.source_rel(name)).is_file()
        assert (layout.root / layout.summary_rel(name)).is_file()
    assert (kb / "raw" / "alpha.md").read_bytes() == (sample_docs / "alpha.md").read_bytes()
    concept = kb / "wiki" / "concepts" / "attention-heads.md"
    assert concept.is_file(), sorted(p.name for p in (kb / "wiki" / "concepts").iterdir())
    text = concept.read_text()
    for doc in ("alpha", "beta", "delta"):
        assert f"[[summaries/{doc}|" in text
    index = (kb / "wiki" / "index.md").read_text()
    assert "[[catalog/documents/_first|documents: the first]]" in index
    catalog = kb / "wiki" / "catalog"
    assert "[[summaries/gamma|" in (catalog / "documents" / "_first.md").read_text()
    assert "[[concepts/attention-heads|" in (catalog / "concepts" / "_first.md").read_text()
    log = (kb / "wiki" / "log.md").read_text()
    assert log.count(" add [[summaries/") == 4
    verify_ok(kb)


def test_adding_the_same_content_again_changes_nothing(kb: Path, sample_docs: Path,
                                                       tmp_path: Path) -> None:
    add(kb, sample_docs)
    before = tree_hash(kb)
    copy = write_tree(tmp_path / "copy", {"renamed.md": (sample_docs / "alpha.md").read_text()})
    report = add(kb, sample_docs, copy)
    assert report.added == [] and report.failed == []
    # "unchanged" when the stat cache vouches for a file (its entry is not
    # racily clean: the first add started 2 s or more after the file was written).
    assert {s.reason for s in report.skipped} <= {"duplicate", "unchanged"}
    assert tree_hash(kb) == before


def test_duplicates_inside_one_run_are_added_once(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "d", {"a.md": markdown_doc("A", "x topic"),
                                       "b.md": markdown_doc("A", "x topic")})
    report = add(kb, docs)
    assert [n for n, _ in report.added] == ["a"]
    assert [(s.display.endswith("b.md"), s.reason) for s in report.skipped] == [
        (True, "duplicate-in-run")]


@pytest.mark.parametrize("jobs", [1, 2])
def test_same_stem_in_two_folders_gets_two_stable_names(kb: Path, tmp_path: Path,
                                                        jobs: int) -> None:
    docs = write_tree(tmp_path / "d", {"a/notes.md": markdown_doc("First notes", "apples"),
                                       "b/notes.md": markdown_doc("Second notes", "pears"),
                                       "c/Notes.md": markdown_doc("Third notes", "plums")})
    add(kb, docs, jobs=jobs)
    rows = {row.origin.split("/")[-2]: row.name for row in
            api.list_documents(str(kb), Progress())}
    assert rows == {"a": "notes", "b": "notes-2", "c": "notes-3"}


def test_jobs_do_not_change_the_kb(tmp_path: Path, sample_docs: Path) -> None:
    hashes = []
    for jobs in (1, 2):
        root = tmp_path / f"kb{jobs}"
        api.init(str(root))
        add(root, sample_docs, jobs=jobs)
        hashes.append(tree_hash(root))
    assert hashes[0] == hashes[1]


def test_editing_a_file_and_adding_it_again_updates_the_document(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "d", {"notes.md": markdown_doc("Notes", "apples", "pears")})
    add(kb, docs)
    (docs / "notes.md").write_text(markdown_doc("Notes v2", "plums", "cherries"))
    report = add(kb, docs)
    assert [n for n, _ in report.updated] == ["notes"] and report.added == []
    assert names(kb) == ["notes"]
    assert "Notes v2" in (kb / "wiki" / "summaries" / "notes.md").read_text()
    assert "plums" in (kb / "wiki" / "sources" / "notes.md").read_text()
    assert " update [[summaries/notes|" in (kb / "wiki" / "log.md").read_text()
    verify_ok(kb)


def test_remove_takes_the_document_and_its_pages_away(kb: Path, sample_docs: Path) -> None:
    add(kb, sample_docs)
    report = api.remove(str(kb), ["alpha", "beta"], Progress())
    assert [r.name for r in report.removed] == ["alpha", "beta"]
    assert names(kb) == ["delta", "gamma"]
    assert not (kb / "raw" / "alpha.md").exists()
    assert not (kb / "wiki" / "summaries" / "beta.md").exists()
    # "attention heads" is left in one document only: no longer a concept.
    assert not (kb / "wiki" / "concepts" / "attention-heads.md").exists()
    assert "alpha" not in (kb / "wiki" / "catalog" / "documents" / "_first.md").read_text()
    assert api.search(str(kb), "alpha", Progress()) == [] or all(
        h.doc != "alpha" for h in api.search(str(kb), "alpha", Progress()))
    verify_ok(kb)


def test_remove_dry_run_and_unknown_names_change_nothing(kb: Path, sample_docs: Path) -> None:
    add(kb, sample_docs)
    before = tree_hash(kb)
    report = api.remove(str(kb), ["alpha"], Progress(), dry_run=True)
    assert [r.name for r in report.removed] == ["alpha"] and report.txid is None
    with pytest.raises(UnknownDocument):
        api.remove(str(kb), ["beta", "no-such-doc"], Progress())
    assert tree_hash(kb) == before


def test_remove_keep_raw_moves_the_original_to_the_attic(kb: Path, sample_docs: Path) -> None:
    add(kb, sample_docs)
    api.remove(str(kb), ["gamma"], Progress(), keep_raw=True)
    assert (kb / "attic" / "gamma.txt").read_bytes() == (sample_docs / "gamma.txt").read_bytes()
    assert not (kb / "raw" / "gamma.txt").exists()
    verify_ok(kb)


def test_search_ranks_documents_and_marks_the_match(kb: Path, sample_docs: Path) -> None:
    add(kb, sample_docs)
    hits = api.search(str(kb), "gradient descent", Progress())
    assert {h.doc for h in hits} == {"beta", "gamma"}
    assert all("\x02" in h.snippet for h in hits)
    # FTS5 syntax in user input is just words, not an error.
    assert api.search(str(kb), 'attention AND "heads', Progress())


def test_recompile_restores_edited_pages(kb: Path, sample_docs: Path) -> None:
    add(kb, sample_docs)
    pages = [kb / "wiki" / "index.md", kb / "wiki" / "catalog" / "documents" / "_first.md",
             kb / "wiki" / "summaries" / "alpha.md",
             kb / "wiki" / "concepts" / "attention-heads.md"]
    before = [p.read_bytes() for p in pages]
    for page in pages:
        page.write_text("scribbled over\n")
    api.recompile(str(kb), Progress())
    assert [p.read_bytes() for p in pages] == before
    assert "recompile all pages" in (kb / "wiki" / "log.md").read_text()
    verify_ok(kb)


def test_every_action_kind_round_trips_through_the_journal_format(kb: Path) -> None:
    """One (de)serialisation, in the JSON openkb 0.1 wrote."""
    from openkb.commit import actions
    from openkb.layout import KBLayout

    layout = KBLayout.at(kb)
    records = [
        {"kind": "stash", "target": "raw/a.md", "backup": "b1"},
        {"kind": "publish", "target": "raw/a.md", "staged": ".openkb/staging/r/1/raw.md"},
        {"kind": "publish", "target": "raw/a.md", "staged": ".openkb/staging/r/1/raw.md",
         "after_stash": "b1"},
        {"kind": "rewrite", "target": "wiki/index.md", "backup": None},
        {"kind": "rewrite", "target": "wiki/index.md", "backup": "b2"},
        {"kind": "append", "target": "wiki/log.md", "size": 17},
        {"kind": "attic", "target": "raw/a.md", "attic": "attic/a.md"},
    ]
    for record in records:
        action = actions.from_json(record, layout)
        assert type(action).kind == record["kind"]
        assert action.to_json() == record
    assert set(actions.KINDS) == {r["kind"] for r in records}


def test_the_crash_point_catalog_matches_the_code() -> None:
    """Every crashpoint("...") in openkb names a catalog entry, and every
    entry is reached by some call: the list `openkb debug crashpoints` prints
    and the crash suite enumerates is the code's."""
    import ast

    from openkb.crashpoints import CRASHPOINTS

    called = set()
    for path in (Path(__file__).parents[1] / "openkb").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "crashpoint"):
                (arg,) = node.args
                assert isinstance(arg, ast.Constant), f"{path}: a crash point must be a literal"
                called.add(arg.value)
    assert called == set(CRASHPOINTS)
