"""Planning a transaction: from a change set and the registry, every path it
will touch and every byte it will write, decided before anything is touched.

Planning only reads (the registry, and whether files exist), so a plan can
be written into the journal whole before the first change. Its cost is
O(documents changed + pages they touch), except index.md, which lists the
whole KB.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from openkb import pages
from openkb.commit.journal import Journal
from openkb.errors import CommitFailed
from openkb.layout import KBLayout
from openkb.model import PreparedDocument
from openkb.registry import DocumentRow, Registry


@dataclass(frozen=True)
class Removal:
    name: str
    keep_raw: bool = False


@dataclass
class ChangeSet:
    """What one transaction does: add documents, remove documents, or
    re-render every compiled page (``recompile``). An update is a removal
    and an addition of the same name."""

    op: str
    added: list[PreparedDocument] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    recompile: bool = False


@dataclass
class Plan:
    journal: Journal
    stash_and_publish: list[dict]  # publish step, in order
    compile_writes: list[tuple[dict, bytes]]  # (rewrite action, new content)
    compile_stashes: list[dict]  # concept pages that stop existing
    log_append: tuple[dict, bytes]
    rows: list[DocumentRow]
    removed_names: list[str]
    summary_updates: list[tuple[str, str]]  # recompile: (name, new summary sha256)


def new_txid() -> str:
    # Hex nanoseconds first, so journal file names sort in creation order.
    return f"{time.time_ns():016x}{os.urandom(4).hex()}"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _ActionList:
    def __init__(self) -> None:
        self.actions: list[dict] = []
        self._backups = 0

    def backup_name(self) -> str:
        self._backups += 1
        return f"b{self._backups}"

    def add(self, action: dict) -> dict:
        self.actions.append(action)
        return action


def plan_changes(layout: KBLayout, registry: Registry, changes: ChangeSet,
                 staging_dirs: list[str]) -> Plan:
    txid = new_txid()
    now = utc_now()
    acts = _ActionList()
    removed_names = [r.name for r in changes.removed]
    removed_rows = {}
    for removal in changes.removed:
        row = registry.document(removal.name)
        if row is None:
            raise CommitFailed(f"cannot remove {removal.name!r}: it is not in the registry")
        removed_rows[removal.name] = row

    # -- publish step: move removed files aside, new files in -------------
    stash_and_publish: list[dict] = []
    vacated: set[str] = set()
    for removal in changes.removed:
        row = removed_rows[removal.name]
        raw_rel = layout.raw_rel(row.name, row.ext)
        for rel in (raw_rel, layout.source_rel(row.name), layout.summary_rel(row.name)):
            vacated.add(rel)
            if not os.path.lexists(layout.root / rel):
                continue  # already gone (verify --repair re-converting a lost source)
            if rel == raw_rel and removal.keep_raw:
                stash_and_publish.append(acts.add(
                    {"kind": "attic", "target": rel, "attic": _free_attic_rel(layout, row)}))
            else:
                stash_and_publish.append(acts.add(
                    {"kind": "stash", "target": rel, "backup": acts.backup_name()}))

    for doc in changes.added:
        if registry.name_taken(doc.name) and doc.name not in removed_names:
            raise CommitFailed(f"the name {doc.name!r} is already taken")
        holder = registry.name_by_sha(doc.sha256)
        if holder is not None and holder not in removed_names:
            raise CommitFailed(f"{doc.display} is already in the KB as {holder!r}")
        for staged, rel in (
            (doc.staged_raw, layout.raw_rel(doc.name, doc.ext)),
            (doc.staged_source, layout.source_rel(doc.name)),
            (doc.staged_summary, layout.summary_rel(doc.name)),
        ):
            if rel not in vacated and os.path.lexists(layout.root / rel):
                raise CommitFailed(
                    f"{rel} exists but the registry does not list it",
                    hint="run `openkb verify --repair` to quarantine orphaned files",
                )
            stash_and_publish.append(acts.add(
                {"kind": "publish", "target": rel, "staged": layout.rel(_abs(staged))}))

    # -- compile step: concept pages, index.md, summaries on recompile ----
    compile_writes: list[tuple[dict, bytes]] = []
    compile_stashes: list[dict] = []
    summary_updates: list[tuple[str, str]] = []

    def rewrite(rel: str, content: str) -> None:
        exists = os.path.lexists(layout.root / rel)
        action = acts.add({"kind": "rewrite", "target": rel,
                           "backup": acts.backup_name() if exists else None})
        compile_writes.append((action, content.encode("utf-8")))

    def drop(rel: str) -> None:
        if os.path.lexists(layout.root / rel):
            compile_stashes.append(acts.add(
                {"kind": "stash", "target": rel, "backup": acts.backup_name()}))

    concept_counts = dict(registry.concepts())
    if changes.recompile:
        _plan_recompile(layout, registry, rewrite, drop, concept_counts, summary_updates)
    else:
        for term, docs in _concept_deltas(registry, changes, removed_names).items():
            rel = layout.concept_rel(pages.concept_slug(term))
            if len(docs) >= 2:
                rewrite(rel, pages.render_concept(term, sorted(docs.items())))
                concept_counts[term] = len(docs)
            else:
                drop(rel)
                concept_counts.pop(term, None)

    catalog = [entry for entry in registry.catalog() if entry[0] not in removed_names]
    catalog += [(d.name, d.info.title, d.info.kind) for d in changes.added]
    rewrite(layout.INDEX_REL, pages.render_index(catalog, sorted(concept_counts.items())))

    # -- log.md: appended, undone by truncating to its old size -----------
    log_lines = []
    added_names = {d.name for d in changes.added}
    for name in removed_names:
        if name not in added_names:
            log_lines.append(pages.render_log_line(
                now, "remove", pages.doc_link(name, removed_rows[name].title), txid))
    for doc in changes.added:
        op = "update" if doc.name in removed_names else "add"
        log_lines.append(pages.render_log_line(
            now, op, pages.doc_link(doc.name, doc.info.title), txid))
    if changes.recompile:
        log_lines.append(pages.render_log_line(now, "recompile", "all pages", txid))
    log_size = layout.log_md.stat().st_size if layout.log_md.exists() else 0
    log_action = acts.add({"kind": "append", "target": layout.LOG_REL, "size": log_size})

    rows = [
        DocumentRow(
            name=d.name, sha256=d.sha256, origin=d.origin, ext=d.ext, kind=d.info.kind,
            title=d.info.title, bytes=d.size, info=d.info, source_sha256=d.source_sha256,
            summary_sha256=d.summary_sha256, added_at=now, txid=txid,
        )
        for d in changes.added
    ]
    journal = Journal(
        txid=txid, op=changes.op,
        docs=sorted(set(removed_names) | added_names), actions=acts.actions,
        staging=staging_dirs, created=now, pid=os.getpid(),
    )
    return Plan(journal, stash_and_publish, compile_writes, compile_stashes,
                (log_action, "".join(log_lines).encode("utf-8")), rows, removed_names,
                summary_updates)


def _abs(path: str) -> str:
    return os.path.abspath(path)


def _concept_deltas(registry: Registry, changes: ChangeSet,
                    removed_names: list[str]) -> dict[str, dict[str, str]]:
    """For every term the change touches: its documents (name -> title) after it."""
    removed = set(removed_names)
    terms: set[str] = set()
    for name in removed:
        terms.update(registry.doc_terms(name))
    for doc in changes.added:
        terms.update(doc.info.terms)
    result: dict[str, dict[str, str]] = {}
    for term in sorted(terms):
        docs = {n: t for n, t in registry.term_docs(term) if n not in removed}
        docs.update({d.name: d.info.title for d in changes.added if term in d.info.terms})
        result[term] = docs
    return result


def _plan_recompile(
    layout: KBLayout,
    registry: Registry,
    rewrite: Callable[[str, str], None],
    drop: Callable[[str], None],
    concept_counts: dict[str, int],
    summary_updates: list[tuple[str, str]],
) -> None:
    """Re-render every summary and concept page from the registry; drop
    concept pages that no concept backs."""
    for row in registry.documents():
        content = pages.render_summary(row.name, row.ext, row.bytes, row.info).encode("utf-8")
        path = layout.root / layout.summary_rel(row.name)
        if not path.exists() or path.read_bytes() != content:
            rewrite(layout.summary_rel(row.name), content.decode("utf-8"))
            summary_updates.append((row.name, hashlib.sha256(content).hexdigest()))
    wanted = set()
    for term in sorted(concept_counts):
        slug = pages.concept_slug(term)
        wanted.add(f"{slug}.md")
        rewrite(layout.concept_rel(slug), pages.render_concept(term, registry.term_docs(term)))
    if layout.concepts_dir.is_dir():
        for entry in sorted(os.listdir(layout.concepts_dir)):
            if entry.endswith(".md") and entry not in wanted:
                drop(f"wiki/concepts/{entry}")


def _free_attic_rel(layout: KBLayout, row: DocumentRow) -> str:
    rel = f"attic/{row.name}{row.ext}"
    n = 2
    while os.path.lexists(layout.root / rel):
        rel = f"attic/{row.name}-{n}{row.ext}"
        n += 1
    return rel
