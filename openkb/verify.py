"""`openkb verify [--repair]`: check every invariant of a KB, and mend what its
own data allows.

Invariants:

- SQLite ``integrity_check`` and the FTS5 integrity check pass;
- no journal is pending, no staging, backup or temp file is left over;
- every registry row has its raw, source and summary files, with the hashes
  the registry recorded, and at least one chunk in the index;
- no file in ``raw/``, ``wiki/sources`` or ``wiki/summaries`` lacks a row,
  and no chunk lacks a document;
- concept pages, ``index.md`` and every summary are byte for byte what
  :mod:`openkb.pages` renders from the registry; term counts match.

Repair never deletes an original: orphaned files, stray pages among the
concepts included, move to ``.openkb/quarantine/<time>/``, a folder of their
own for each repair; what a crash left in ``.openkb`` is swept as recovery
sweeps it; pages are re-rendered by a journaled recompile; the index is
rebuilt from ``wiki/sources``; a document whose source is lost is
re-converted from its raw file.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from openkb import fsio, index_md, pages
from openkb.commit import ChangeSet, Removal, commit_changes
from openkb.commit.journal import pending_journal_paths, txid_of
from openkb.config import load_config
from openkb.digest import sha256_file
from openkb.errors import IndexUnreadable
from openkb.layout import KBLayout
from openkb.model import PrepareTask
from openkb.prepare.chunk import chunk_markdown
from openkb.progress import Progress
from openkb.recovery import describe_journal, leftover_paths, sweep_leftovers
from openkb.registry import Registry


@dataclass
class Problem:
    code: str
    path: str
    message: str
    repaired: bool = False


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    documents: int = 0
    concepts: int = 0
    files_checked: int = 0
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)

    def add(self, code: str, path: str, message: str) -> None:
        self.problems.append(Problem(code, path, message))


def check(layout: KBLayout, registry: Registry) -> VerifyReport:
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
    names = {row.name for row in rows}
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
    for area, wanted in expected_files.items():
        for entry in _entries(layout.root / area):
            report.files_checked += 1
            if entry not in wanted and not fsio.is_tmp_name(entry):
                report.add("orphan", f"{area}/{entry}", "file has no registry row")
    _check_pages(layout, registry, report)
    return report


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
    index = index_md.render_index(registry.catalog(), concepts).encode("utf-8")
    if not layout.index_md.is_file() or layout.index_md.read_bytes() != index:
        report.add("index-md", layout.INDEX_REL, "index.md does not match the registry")
    if not layout.log_md.is_file():
        report.add("log", layout.LOG_REL, "log.md is missing")


def _entries(directory: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(directory) if not e.is_dir())
    except FileNotFoundError:
        return []


# -- repair -------------------------------------------------------------------


def verify_kb(layout: KBLayout, registry: Registry, progress: Progress, *,
              repair: bool = False) -> VerifyReport:
    with progress.span("verify", "verify"):
        report = check(layout, registry)
    if not repair or report.ok:
        return report
    with progress.span("repair", "repair"):
        _repair(layout, registry, progress, report)
        after = check(layout, registry)
    after.repaired = True
    remaining = {(p.code, p.path) for p in after.problems}
    for problem in report.problems:
        problem.repaired = (problem.code, problem.path) not in remaining
    # Report what was found, what got fixed, and anything still wrong.
    found = {(p.code, p.path) for p in report.problems}
    after.problems = report.problems + [p for p in after.problems
                                        if (p.code, p.path) not in found]
    return after


def _repair(layout: KBLayout, registry: Registry, progress: Progress,
            report: VerifyReport) -> None:
    codes = {p.code for p in report.problems}
    if "leftover" in codes and not pending_journal_paths(layout):
        # With no journal pending, no backup dir or staging dir of a dead
        # run is needed by anyone: remove them as recovery does.
        sweep_leftovers(layout)
    quarantine = Quarantine(layout)
    # Before any recompile: it would delete a stray page among the concepts.
    for rel in dict.fromkeys(p.path for p in report.problems
                             if p.code in ("orphan", "leftover")):
        quarantine.keep(rel)
    if "terms" in codes:
        with registry.write_transaction() as writer:
            writer.recount_terms()
            writer.commit()
    if codes & {"index", "sqlite"}:
        _rebuild_index(layout, registry)
    lost_sources = [p.path for p in report.problems
                    if p.code in ("missing-source", "changed-source")]
    try:
        for rel in lost_sources:
            _reconvert(layout, registry, progress, Path(rel).stem)
    finally:
        # Each commit sweeps its document's staging, not this run's folder,
        # which would otherwise outlive us as a dead run's leftover.
        fsio.remove_tree(layout.staging_dir / progress.run_id, sync=False)
    if codes & {"concept", "index-md", "stale-summary", "missing-summary", "changed-summary",
                "terms"} or lost_sources:
        commit_changes(layout, registry, ChangeSet(op="recompile", recompile=True), progress)


class Quarantine:
    """Where one repair moves the files it will not delete, under their
    KB-relative paths. Each repair gets a folder of its own, created on the
    first file, so no repair ever replaces what an earlier one kept."""

    def __init__(self, layout: KBLayout) -> None:
        self.layout = layout
        self._folder: Path | None = None

    def keep(self, rel: str) -> None:
        source = self.layout.resolve(rel)
        if not os.path.lexists(source):
            return
        target = self.folder() / rel
        fsio.makedirs(target.parent)
        fsio.replace(source, target)

    def folder(self) -> Path:
        if self._folder is None:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            # Repairs run under the exclusive lock, so no other openkb
            # creates a folder between this check and the mkdir.
            for n in itertools.count(1):
                folder = self.layout.quarantine_dir / (stamp if n == 1 else f"{stamp}-{n}")
                if not os.path.lexists(folder):
                    break
            fsio.makedirs(folder)
            self._folder = folder
        return self._folder


def _rebuild_index(layout: KBLayout, registry: Registry) -> None:
    """Rebuild chunks and the FTS5 table from wiki/sources, in one transaction."""
    # Imported here: it brings markdown-it, which only a repair needs.
    from openkb.prepare.convert_markdown import heading_lines

    chunk_chars = load_config(layout.config_path).chunk_chars
    with registry.write_transaction() as writer:
        writer.reset_index()
        for row in registry.documents():
            path = layout.root / layout.source_rel(row.name)
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                headings = heading_lines(text) if row.kind == "markdown" else None
                writer.insert_chunks(row.name, chunk_markdown(text, chunk_chars, headings))
        writer.commit()


def _reconvert(layout: KBLayout, registry: Registry, progress: Progress, name: str) -> None:
    """Prepare a document again from its raw file and commit it as an update."""
    # Imported here: the converters (pypdf, markdown-it) only a repair needs.
    from openkb.prepare.stage import PrepareLimits, prepare_file

    row = registry.document(name)
    if row is None:
        return
    raw = layout.root / layout.raw_rel(row.name, row.ext)
    if not raw.is_file() or sha256_file(raw) != row.sha256:
        return  # the original is gone too: reported, not repairable
    config = load_config(layout.config_path)
    staging = layout.staging_dir / progress.run_id / f"repair-{name}"
    task = PrepareTask(seq=0, path=str(raw), display=layout.rel(raw), sha256=row.sha256,
                       size=row.bytes, name=row.name, kind=row.kind, ext=row.ext,
                       staging_dir=str(staging), replaces=row.name)
    doc = prepare_file(task, PrepareLimits(config.max_file_mb * 1048576, config.chunk_chars,
                                           config.key_terms_per_doc))
    doc.origin = row.origin
    commit_changes(layout, registry, ChangeSet(op="repair", added=[doc],
                                               removed=[Removal(row.name)]),
                   progress, staging_dirs=[layout.rel(staging)])
