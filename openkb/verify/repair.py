"""Mending a KB: :func:`verify_kb` checks, repairs what the KB's own data
allows, and checks again (see :mod:`openkb.verify` for what repair does)."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from openkb import fsio
from openkb.commit import ChangeSet, Removal, commit_changes
from openkb.config import load_config
from openkb.digest import sha256_file
from openkb.layout import KBLayout
from openkb.llm.cache import ReplyCache, audit, prune
from openkb.model import PrepareTask
from openkb.pending import pending_journal_paths
from openkb.prepare.chunk import chunk_markdown
from openkb.progress import Progress
from openkb.recovery import sweep_leftovers
from openkb.registry import Registry
from openkb.verify.check import check
from openkb.verify.report import VerifyReport


def verify_kb(layout: KBLayout, registry: Registry, progress: Progress, *,
              repair: bool = False) -> VerifyReport:
    with progress.span("verify", "verify"):
        report = check(layout, registry)
    pruned = _prune_llm_cache(layout, registry, report) if repair else 0
    if not repair or report.ok:
        report.llm_cache_pruned = pruned
        return report
    with progress.span("repair", "repair"):
        _repair(layout, registry, progress, report)
        after = check(layout, registry)
    after.repaired = True
    after.llm_cache_pruned = pruned
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


def _prune_llm_cache(layout: KBLayout, registry: Registry, report: VerifyReport) -> int:
    """Delete the cache's damaged entries and those no document uses. Not
    quarantined: each is a copy of a reply, and the worst a deletion costs
    is asking again. Under the lock, but an add may be mid-run (its calls
    run before it takes the lock): an entry it wrote for a document not yet
    committed goes too, and that document's summary is asked again."""
    found = audit(ReplyCache(layout.llm_cache_dir), registry.source_hashes())
    pruned = prune(found.unused + [path for path, _ in found.damaged])
    for problem in report.problems:
        if problem.code == "llm-cache":
            problem.repaired = True
    return pruned


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
                       staging_prefix=str(staging), replaces=row.name)
    doc = prepare_file(task, PrepareLimits.from_config(config))
    doc.origin = row.origin
    commit_changes(layout, registry, ChangeSet(op="repair", added=[doc],
                                               removed=[Removal(row.name)]),
                   progress, staging=[layout.rel(Path(p)) for p in doc.staged_paths])
