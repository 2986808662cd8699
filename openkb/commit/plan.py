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

from openkb import index_md, pages
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
    appends: list[tuple[dict, bytes]]  # (append action, bytes): concept pages, log.md
    rows: list[DocumentRow]
    removed_names: list[str]
    summary_updates: list[tuple[str, str]]  # recompile: (name, new summary sha256)
    index_sha256: str  # of the index.md this plan writes, recorded in the registry


INDEX_SHA_KEY = "index_sha256"


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
    vacated: dict[str, str | None] = {}  # target -> backup of the stash that frees it
    for removal in changes.removed:
        row = removed_rows[removal.name]
        raw_rel = layout.raw_rel(row.name, row.ext)
        for rel in (raw_rel, layout.source_rel(row.name), layout.summary_rel(row.name)):
            vacated[rel] = None
            if not os.path.lexists(layout.root / rel):
                continue  # already gone (verify --repair re-converting a lost source)
            if rel == raw_rel and removal.keep_raw:
                stash_and_publish.append(acts.add(
                    {"kind": "attic", "target": rel, "attic": _free_attic_rel(layout, row)}))
            else:
                backup = acts.backup_name()
                vacated[rel] = backup
                stash_and_publish.append(acts.add(
                    {"kind": "stash", "target": rel, "backup": backup}))

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
            action = {"kind": "publish", "target": rel, "staged": layout.rel(_abs(staged))}
            if vacated.get(rel):
                # An update: the target holds the old file until that stash
                # runs, and rollback must not mistake it for the new one.
                action["after_stash"] = vacated[rel]
            stash_and_publish.append(acts.add(action))

    # -- compile step: concept pages, index.md, summaries on recompile ----
    compile_writes: list[tuple[dict, bytes]] = []
    compile_stashes: list[dict] = []
    appends: list[tuple[dict, bytes]] = []
    summary_updates: list[tuple[str, str]] = []

    def rewrite(rel: str, content: str) -> None:
        exists = os.path.lexists(layout.root / rel)
        action = acts.add({"kind": "rewrite", "target": rel,
                           "backup": acts.backup_name() if exists else None})
        compile_writes.append((action, content.encode("utf-8")))

    def append(rel: str, content: str) -> None:
        size = (layout.root / rel).stat().st_size if os.path.lexists(layout.root / rel) else 0
        appends.append((acts.add({"kind": "append", "target": rel, "size": size}),
                        content.encode("utf-8")))

    def drop(rel: str) -> None:
        if os.path.lexists(layout.root / rel):
            compile_stashes.append(acts.add(
                {"kind": "stash", "target": rel, "backup": acts.backup_name()}))

    if changes.recompile:
        concept_counts = dict(registry.concepts())
        _plan_recompile(layout, registry, rewrite, drop, concept_counts, summary_updates)
        index_text = index_md.render_index(registry.catalog(), sorted(concept_counts.items()))
    else:
        concept_counts = _plan_concepts(layout, registry, changes, removed_rows, rewrite,
                                        append, drop)
        index_text = _next_index(layout, registry, changes, removed_names, concept_counts)
    rewrite(layout.INDEX_REL, index_text)

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
    append(layout.LOG_REL, "".join(log_lines))

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
    return Plan(journal, stash_and_publish, compile_writes, compile_stashes, appends, rows,
                removed_names, summary_updates,
                hashlib.sha256(index_text.encode("utf-8")).hexdigest())


def _abs(path: str) -> str:
    return os.path.abspath(path)


def _plan_concepts(
    layout: KBLayout,
    registry: Registry,
    changes: ChangeSet,
    removed_rows: dict[str, DocumentRow],
    rewrite: Callable[[str, str], None],
    append: Callable[[str, str], None],
    drop: Callable[[str], None],
) -> dict[str, int]:
    """Plan every concept page the change touches; return each touched
    term's document count after it.

    A concept page lists its documents oldest first, so the common case, a
    term that was already a concept gaining documents, appends their lines:
    O(new lines), however many documents the term already has. A page that
    loses a document, or becomes a concept now, is rendered whole.
    """
    removed_terms: dict[str, set[str]] = {}
    for name in removed_rows:
        for term in registry.doc_terms(name):
            removed_terms.setdefault(term, set()).add(name)
    added_by_term: dict[str, list[PreparedDocument]] = {}
    for doc in changes.added:
        for term in doc.info.terms:
            added_by_term.setdefault(term, []).append(doc)
    counts: dict[str, int] = {}
    for term in sorted(set(removed_terms) | set(added_by_term)):
        before = registry.term_count(term)
        leaving = removed_terms.get(term, set())
        arriving = added_by_term.get(term, [])
        after = before - len(leaving) + len(arriving)
        counts[term] = after
        rel = layout.concept_rel(pages.concept_slug(term))
        if after < 2:
            drop(rel)
        elif before >= 2 and not leaving and os.path.lexists(layout.root / rel):
            append(rel, "".join(pages.concept_line(d.name, d.info.title) for d in arriving))
        else:
            docs = [(n, t) for n, t in registry.term_docs(term) if n not in leaving]
            docs += [(d.name, d.info.title) for d in arriving]
            rewrite(rel, pages.render_concept(term, docs))
    return counts


def _next_index(layout: KBLayout, registry: Registry, changes: ChangeSet,
                removed_names: list[str], concept_counts: dict[str, int]) -> str:
    """index.md after the change: spliced into the current file when that is
    exactly what openkb last wrote, else rendered from the registry."""
    added = [(d.name, d.info.title, d.info.kind) for d in changes.added]
    try:
        current = layout.index_md.read_bytes()
    except FileNotFoundError:
        current = None
    if current is not None and hashlib.sha256(current).hexdigest() == registry.meta(
            INDEX_SHA_KEY):
        spliced = index_md.splice_index(current.decode("utf-8"), added=added,
                                        removed=removed_names, concept_counts=concept_counts)
        if spliced is not None:
            return spliced
    removed = set(removed_names)
    catalog = [entry for entry in registry.catalog() if entry[0] not in removed] + added
    concepts = dict(registry.concepts())
    for term, count in concept_counts.items():
        if count >= 2:
            concepts[term] = count
        else:
            concepts.pop(term, None)
    return index_md.render_index(catalog, sorted(concepts.items()))


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
