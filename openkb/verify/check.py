"""Finding what is wrong with a KB: every invariant of :mod:`openkb.verify`,
checked against the files and the registry, changing nothing."""

from __future__ import annotations

import os
from pathlib import Path

from openkb import catalog, fsio, pages
from openkb.digest import sha256_file
from openkb.errors import IndexUnreadable
from openkb.layout import KBLayout
from openkb.llm.cache import ReplyCache, audit
from openkb.pending import leftover_paths, pending_journal_paths, txid_of
from openkb.recovery import describe_journal
from openkb.registry import Registry
from openkb.verify.attribution import attribute
from openkb.verify.report import VerifyReport


def check(layout: KBLayout, registry: Registry) -> VerifyReport:
    """Every problem, each attributed to the pending journal that explains
    it, if one does."""
    report = VerifyReport()
    for problem in registry.integrity_problems():
        report.add("sqlite", ".openkb/kb.sqlite", problem)
    for path in layout.managed_paths():
        if path.is_symlink():
            # Every writing command refuses such a KB; repair cannot decide
            # whether the link or its target is the user's real data.
            report.add("symlink", layout.rel(path), f"is a symlink (to {os.readlink(path)}); "
                       "replace it with the real file or folder")
    _check_leftovers(layout, registry, report)
    _check_documents(layout, registry, report)
    _check_pages(layout, registry, report)
    _check_llm_cache(layout, registry, report)
    attribute(layout, report.problems)
    return report


def _check_llm_cache(layout: KBLayout, registry: Registry, report: VerifyReport) -> None:
    """Every reply in the cache reads back whole, under the key its content
    hashes to. Entries no document uses are no problem (``--repair`` prunes
    them): a removed document leaves its replies behind."""
    found = audit(ReplyCache(layout.llm_cache_dir), registry.source_hashes())
    report.files_checked += found.entries
    report.llm_cache_unused = len(found.unused)
    for path, why in found.damaged:
        report.add("llm-cache", layout.rel(path), f"LLM reply cache entry: {why}; "
                   "`openkb verify --repair` deletes it (the reply is asked again)")


def _check_documents(layout: KBLayout, registry: Registry, report: VerifyReport) -> None:
    """Each row's files and chunks; files and chunks without a row."""
    rows = registry.documents()
    report.documents = len(rows)
    expected_files: dict[str, set[str]] = {"raw": set(), "wiki/sources": set(),
                                           "wiki/summaries": set()}
    chunk_counts = registry.chunk_counts()
    for row in rows:
        raw_rel = layout.raw_rel(row.name, row.ext)
        expected_files["raw"].add(Path(raw_rel).name)
        expected_files["wiki/sources"].add(f"{row.name}.md")
        expected_files["wiki/summaries"].add(f"{row.name}.md")
        summary = pages.render_summary(row.name, row.ext, row.bytes, row.info).encode("utf-8")
        for rel, want, code in (
            (raw_rel, row.sha256, "raw"),
            (layout.source_rel(row.name), row.source_sha256, "source"),
            (layout.summary_rel(row.name), row.summary_sha256, "summary"),
        ):
            path = layout.root / rel
            report.files_checked += 1
            if not path.is_file():
                report.add(f"missing-{code}", rel, f"{row.name}: {code} file is missing")
            elif sha256_file(path) != want:
                report.add(f"changed-{code}", rel, f"{row.name}: {code} file does not match the "
                           "registry's hash")
            elif code == "summary" and path.read_bytes() != summary:
                report.add("stale-summary", rel, f"{row.name}: summary differs from its rendering")
        if not chunk_counts.get(row.name):
            report.add("index", row.name, f"{row.name}: no chunks in the search index")
    _check_index(registry, {row.name for row in rows}, chunk_counts, report)
    for area, wanted in expected_files.items():
        for entry in _entries(layout.root / area):
            report.files_checked += 1
            if entry not in wanted and not fsio.is_tmp_name(entry):
                report.add("orphan", f"{area}/{entry}", "file has no registry row")


def _check_index(registry: Registry, names: set[str], chunk_counts: dict[str, int],
                 report: VerifyReport) -> None:
    for doc in chunk_counts:
        if doc not in names:
            report.add("index", doc, f"chunks in the index for unknown document {doc!r}")
    chunk_rows = sum(chunk_counts.values())
    try:
        fts_rows = registry.fts_row_count()
    except IndexUnreadable as exc:
        # A dropped FTS table, or shadow tables too damaged for FTS5 to open
        # it ("vtable constructor failed"): repair rebuilds it from sources.
        report.add("index", "chunks_fts", str(exc))
    else:
        if fts_rows != chunk_rows:
            report.add("index", "chunks_fts", f"{fts_rows} FTS rows for {chunk_rows} chunks")


def _check_leftovers(layout: KBLayout, registry: Registry, report: VerifyReport) -> None:
    pending = pending_journal_paths(layout)
    for path in pending:
        report.add("journal", layout.rel(path), describe_journal(layout, registry, path).message)
    # A pending journal's backup dir is its before-images, not a leftover.
    owned = {path.with_suffix("") for path in pending}
    # What recovery would sweep, less the records of dead runs: `openkb
    # status` already ignores those, so they are not damage.
    found = {path for path in leftover_paths(layout)
             if path not in owned and path.parent != layout.runs_dir}
    found.update(layout.journal_dir / entry for entry in _entries(layout.journal_dir)
                 if txid_of(layout.journal_dir / entry) is None)
    for path in sorted(found):
        report.add("leftover", layout.rel(path), _leftover_message(layout, path))
    for area in ("raw", "wiki", "wiki/sources", "wiki/summaries", "wiki/concepts"):
        for entry in _entries(layout.root / area):
            if fsio.is_tmp_name(entry):
                report.add("leftover", f"{area}/{entry}", "temp file left by a crash")


def _leftover_message(layout: KBLayout, path: Path) -> str:
    if path.parent == layout.staging_dir:
        return "staging of a run whose process is gone (`openkb recover` removes it)"
    if path.parent == layout.journal_dir and path.is_dir():
        return ("backup dir of a transaction whose journal is gone "
                "(`openkb recover` removes it)")
    if fsio.is_tmp_name(path.name):
        return "temp file left by a crash"
    return "stray file in the journal dir, not a journal (repair quarantines it)"


def _check_pages(layout: KBLayout, registry: Registry, report: VerifyReport) -> None:
    concepts = registry.concepts()
    report.concepts = len(concepts)
    if registry.term_counts() != registry.stored_term_counts():
        report.add("terms", "terms", "term counts do not match the documents' key terms")
    wanted = set()
    for term, _ in concepts:
        rel = layout.concept_rel(pages.concept_slug(term))
        wanted.add(Path(rel).name)
        path = layout.root / rel
        report.files_checked += 1
        content = pages.render_concept(term, registry.term_docs(term)).encode("utf-8")
        if not path.is_file():
            report.add("concept", rel, f"concept page for {term!r} is missing")
        elif path.read_bytes() != content:
            report.add("concept", rel, f"concept page for {term!r} is out of date")
    # No commit leaves a page without its concept, so an unbacked one is
    # someone's own file: an orphan to quarantine, not a page to recompile
    # away (the recompile would delete it).
    for entry in _entries(layout.concepts_dir):
        if entry not in wanted and not fsio.is_tmp_name(entry):
            report.add("orphan", f"wiki/concepts/{entry}", "page with no concept behind it")
    _check_catalog(layout, registry, [term for term, _ in concepts], report)
    if not layout.log_md.is_file():
        report.add("log", layout.LOG_REL, "log.md is missing")


def _check_catalog(layout: KBLayout, registry: Registry, concepts: list[str],
                   report: VerifyReport) -> None:
    """index.md and every catalog page, as a full render makes them; a page
    no render makes is stale (only openkb writes there, so a recompile, which
    drops it, is the repair)."""
    expected = catalog.render_catalog(registry.catalog(), concepts)
    if not layout.index_md.is_file() or layout.index_md.read_bytes() != expected.index.encode():
        report.add("index-md", layout.INDEX_REL, "index.md does not match the registry")
    for rel, content in sorted(expected.pages.items()):
        path = layout.root / rel
        report.files_checked += 1
        if not path.is_file() or path.read_bytes() != (content or "").encode("utf-8"):
            report.add("index-md", rel, "catalog page does not match the registry")
    for shelf in catalog.SHELVES:
        folder = f"wiki/catalog/{shelf.kind}"
        for entry in _entries(layout.root / folder):
            if f"{folder}/{entry}" not in expected.pages and not fsio.is_tmp_name(entry):
                report.add("index-md", f"{folder}/{entry}", "catalog page the registry does "
                           "not have")


def _entries(directory: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(directory) if not e.is_dir())
    except FileNotFoundError:
        return []
