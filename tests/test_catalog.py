"""The catalog (index.md and its pages): a commit's splice gives the bytes a
full render gives, pages depend on the set of documents only, and a commit
rewrites a bounded number of pages whatever the KB's size."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from openkb import catalog
from openkb.catalog import render_catalog, splice_catalog


def _fetch(entries: dict[str, str]):
    def fetch(key: str, limit: int) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in entries.items() if k >= key)[:limit]
    return fetch


def _apply(files: dict[str, str], result: catalog.Catalog) -> None:
    for rel, content in result.pages.items():
        if content is None:
            files.pop(rel, None)
        else:
            files[rel] = content


@pytest.mark.parametrize("page_target", [2, 5, 256])
def test_splice_matches_a_full_render_over_random_histories(monkeypatch, page_target) -> None:
    monkeypatch.setattr(catalog, "PAGE_TARGET", page_target)
    rng = random.Random(page_target)
    docs: dict[str, str] = {}  # name -> catalog line
    concepts: dict[str, str] = {}
    full = render_catalog([], [])
    text, files = full.index, dict(full.pages)
    for _ in range(400):
        removed = rng.sample(sorted(docs), k=min(len(docs), rng.randint(0, 3)))
        doc_changes: dict[str, str | None] = dict.fromkeys(removed)
        for _ in range(rng.randint(0, 5)):
            name = f"doc-{rng.randint(0, 300)}"
            if name not in docs or name in removed:
                doc_changes[name] = catalog.doc_entry(name, f"T{rng.randint(0, 9)} | [x]",
                                                      rng.choice(["pdf", "text"]))
        concept_changes: dict[str, str | None] = {}
        for _ in range(rng.randint(0, 4)):
            term = f"term {rng.randint(0, 150)}"
            concept_changes[term] = None if term in concepts else catalog.concept_entry(term)
        spliced = splice_catalog(text, documents=(_fetch(docs), doc_changes),
                                 concepts=(_fetch(concepts), concept_changes))
        assert spliced is not None
        for mine, changes in ((docs, doc_changes), (concepts, concept_changes)):
            for key, line in changes.items():
                if line is None:
                    mine.pop(key, None)
                else:
                    mine[key] = line
        _apply(files, spliced)
        full = render_catalog([(n, *_title_kind(line)) for n, line in sorted(docs.items())],
                              sorted(concepts))
        assert spliced.index == full.index
        assert files == full.pages
        text = spliced.index
    if page_target < 256:
        assert len(files) > 20  # many pages came and went along the way


def _title_kind(line: str) -> tuple[str, str]:
    """Back from a document's catalog line to its title and kind."""
    link, _, kind = line.rpartition(" · ")
    return link.split("|", 1)[1].removesuffix("]]"), kind


def test_a_change_rewrites_only_the_pages_it_falls_on() -> None:
    docs = {f"note-{i:06d}": catalog.doc_entry(f"note-{i:06d}", f"Note {i}", "markdown")
            for i in range(0, 40_000, 2)}
    full = render_catalog([(n, *_title_kind(line)) for n, line in sorted(docs.items())], [])
    assert len(full.pages) > 40  # ~20,000 / 256
    added = {"note-000101": catalog.doc_entry("note-000101", "New", "markdown")}
    spliced = splice_catalog(full.index, documents=(_fetch(docs), added),
                             concepts=(_fetch({}), {}))
    assert spliced is not None and len(spliced.pages) <= 2
    assert spliced.index == full.index  # no page split or merged: index.md unchanged


def test_splice_refuses_a_file_it_did_not_write() -> None:
    assert splice_catalog("# My own index\n\nhand written\n", documents=(_fetch({}), {}),
                          concepts=(_fetch({}), {})) is None


def test_a_kb_pages_its_catalog_and_verify_checks_every_page(cli, kb: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setattr(catalog, "PAGE_TARGET", 3)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(40):
        (docs / f"paper-{i:02d}.md").write_text(f"# Paper {i}\n\nWords about topic {i}.\n")
    assert cli("--kb", str(kb), "add", "--jobs", "1", str(docs)).code == 0
    pages = sorted((kb / "wiki" / "catalog" / "documents").glob("*.md"))
    assert len(pages) > 3
    index = (kb / "wiki" / "index.md").read_text()
    assert index.count("[[catalog/documents/") == len(pages)
    assert "[[summaries/paper-07|Paper 7]]" in "".join(p.read_text() for p in pages)
    for name in ("paper-03", "paper-04", "paper-05", "paper-30"):
        assert cli("--kb", str(kb), "remove", name).code == 0
    assert cli("--kb", str(kb), "verify").code == 0
    pages[-1].write_text("# tampered\n")
    (kb / "wiki" / "catalog" / "documents" / "stray.md").write_text("# mine\n")
    result = cli("--kb", str(kb), "verify", "--json")
    assert result.code == 1 and result.out.count('"index-md"') == 2
    assert cli("--kb", str(kb), "verify", "--repair").code == 0
    assert cli("--kb", str(kb), "verify").code == 0
    assert not (kb / "wiki" / "catalog" / "documents" / "stray.md").exists()
