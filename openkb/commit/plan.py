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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from openkb import pages
from openkb.commit.actions import Action, Append, Attic, Publish, Rewrite, Stash
from openkb.commit.catalog_plan import full_catalog, next_catalog
from openkb.commit.journal import Journal
from openkb.errors import CommitFailed
from openkb.layout import KBLayout
from openkb.model import DocumentInfo, PreparedDocument
from openkb.registry import DocumentRow, Registry


@dataclass(frozen=True)
class Removal:
    name: str
    keep_raw: bool = False


@dataclass(frozen=True)
class Move:
    """A document whose original was moved (`openkb sync`): its origin
    changes in the registry, and nothing else (no page names the origin)."""

    name: str
    origin: str


@dataclass
class ChangeSet:
    """What one transaction does: add documents, remove documents, move
    them, or re-render every compiled page (``recompile``). An update is a
    removal and an addition of the same name. ``infos`` gives committed
    documents a new summary (or pending mark, openkb.llm): their info in the
    registry and their summary pages change, nothing else."""

    op: str
    added: list[PreparedDocument] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    recompile: bool = False
    moved: list[Move] = field(default_factory=list)
    infos: dict[str, DocumentInfo] = field(default_factory=dict)


@dataclass
class Plan:
    journal: Journal
    publish: list[Stash | Attic | Publish]  # publish step, in order
    rewrites: list[tuple[Rewrite, bytes]]  # compile step: (action, new content)
    compile_stashes: list[Stash]  # concept pages that stop existing
    appends: list[tuple[Append, bytes]]  # (action, bytes): concept pages, log.md
    rows: list[DocumentRow]
    removed_names: list[str]
    summary_updates: list[tuple[str, str]]  # recompile: (name, new summary sha256)
    index_sha256: str  # of the index.md this plan writes, recorded in the registry
    moved: list[Move] = field(default_factory=list)
    info_updates: dict[str, DocumentInfo] = field(default_factory=dict)  # ChangeSet.infos


A = TypeVar("A", bound=Action)


def new_txid() -> str:
    # Hex nanoseconds first, so journal file names sort in creation order.
    return f"{time.time_ns():016x}{os.urandom(4).hex()}"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Actions:
    """The journal's actions, in the order they will be applied, sorted into
    the steps that apply them; backup names handed out as they are needed."""

    def __init__(self, layout: KBLayout) -> None:
        self.layout = layout
        self.all: list[Action] = []
        self.publish: list[Stash | Attic | Publish] = []
        self.rewrites: list[tuple[Rewrite, bytes]] = []
        self.compile_stashes: list[Stash] = []
        self.appends: list[tuple[Append, bytes]] = []
        self._backups = 0

    def _add(self, action: A) -> A:
        self.all.append(action)
        return action

    def _exists(self, rel: str) -> bool:
        return os.path.lexists(self.layout.root / rel)

    def backup_name(self) -> str:
        self._backups += 1
        return f"b{self._backups}"

    def stash(self, rel: str) -> str:
        """Publish step: move a live file aside; returns its backup name."""
        action = self._add(Stash(rel, self.backup_name()))
        self.publish.append(action)
        return action.backup

    def attic(self, rel: str, attic_rel: str) -> None:
        self.publish.append(self._add(Attic(rel, attic_rel)))

    def publish_staged(self, rel: str, staged_rel: str, after_stash: str | None) -> None:
        self.publish.append(self._add(Publish(rel, staged_rel, after_stash)))

    def rewrite(self, rel: str, content: str) -> None:
        backup = self.backup_name() if self._exists(rel) else None
        self.rewrites.append((self._add(Rewrite(rel, backup)), content.encode("utf-8")))

    def append(self, rel: str, content: str) -> None:
        size = (self.layout.root / rel).stat().st_size if self._exists(rel) else 0
        self.appends.append((self._add(Append(rel, size)), content.encode("utf-8")))

    def drop(self, rel: str) -> None:
        """Compile step: a page that stops existing is moved aside."""
        if self._exists(rel):
            self.compile_stashes.append(self._add(Stash(rel, self.backup_name())))


def plan_changes(layout: KBLayout, registry: Registry, changes: ChangeSet,
                 staging: list[str]) -> Plan:
    txid, now = new_txid(), utc_now()
    removed_rows = _rows_to_remove(registry, changes)
    moved_titles = _moved_titles(registry, changes, removed_rows)
    removed_names = list(removed_rows)
    acts = _Actions(layout)
    vacated = _plan_removals(layout, acts, changes, removed_rows)
    _plan_additions(layout, registry, acts, changes, removed_names, vacated)
    summary_updates: list[tuple[str, str]] = []
    if changes.infos:
        _plan_new_summaries(layout, registry, acts, changes.infos, summary_updates)
    if changes.recompile:
        concept_counts = dict(registry.concepts())
        _plan_recompile(layout, registry, acts, concept_counts, summary_updates,
                        skip=set(changes.infos))
        compiled = full_catalog(layout, registry.catalog(), list(concept_counts))
    else:
        concept_counts = _plan_concepts(layout, registry, acts, changes, removed_rows)
        compiled = next_catalog(layout, registry, changes.added, removed_names, concept_counts)
    index_text = compiled.index
    if not _holds(layout.index_md, index_text):  # most commits split or merge no page
        acts.rewrite(layout.INDEX_REL, index_text)
    for rel, page in sorted(compiled.pages.items()):
        if page is None:
            acts.drop(rel)
        else:
            acts.rewrite(rel, page)
    acts.append(layout.LOG_REL, _log_lines(changes, removed_rows, moved_titles, now, txid))
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
        docs=sorted(set(removed_names) | {d.name for d in changes.added} | set(changes.infos)
                    | {m.name for m in changes.moved}),
        actions=acts.all,
        staging=staging, created=now, pid=os.getpid(),
    )
    return Plan(journal, acts.publish, acts.rewrites, acts.compile_stashes, acts.appends, rows,
                removed_names, summary_updates,
                hashlib.sha256(index_text.encode("utf-8")).hexdigest(), list(changes.moved),
                changes.infos)


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except FileNotFoundError:
        return False


def _rows_to_remove(registry: Registry, changes: ChangeSet) -> dict[str, DocumentRow]:
    removed_rows = {}
    for removal in changes.removed:
        row = registry.document(removal.name)
        if row is None:
            raise CommitFailed(f"cannot remove {removal.name!r}: it is not in the registry")
        removed_rows[removal.name] = row
    return removed_rows


def _moved_titles(registry: Registry, changes: ChangeSet,
                  removed_rows: dict[str, DocumentRow]) -> dict[str, str]:
    titles = {}
    for move in changes.moved:
        row = registry.document(move.name)
        if row is None or move.name in removed_rows:
            raise CommitFailed(f"cannot move {move.name!r}: it is not in the registry")
        titles[move.name] = row.title
    return titles


def _plan_removals(layout: KBLayout, acts: _Actions, changes: ChangeSet,
                   removed_rows: dict[str, DocumentRow]) -> dict[str, str | None]:
    """Move removed documents' files aside (or to the attic); returns each
    vacated path with the backup of the stash that frees it."""
    vacated: dict[str, str | None] = {}
    for removal in changes.removed:
        row = removed_rows[removal.name]
        raw_rel = layout.raw_rel(row.name, row.ext)
        for rel in (raw_rel, layout.source_rel(row.name), layout.summary_rel(row.name)):
            vacated[rel] = None
            if not os.path.lexists(layout.root / rel):
                continue  # already gone (verify --repair re-converting a lost source)
            if rel == raw_rel and removal.keep_raw:
                acts.attic(rel, _free_attic_rel(layout, row))
            else:
                vacated[rel] = acts.stash(rel)
    return vacated


def _plan_additions(layout: KBLayout, registry: Registry, acts: _Actions, changes: ChangeSet,
                    removed_names: list[str], vacated: dict[str, str | None]) -> None:
    """Move new documents' staged files into place, refusing to overwrite
    anything the registry does not know is going."""
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
            # An update: the target holds the old file until that stash runs,
            # and rollback must not mistake it for the new one.
            acts.publish_staged(rel, layout.rel(Path(os.path.abspath(staged))), vacated.get(rel))


def _log_lines(changes: ChangeSet, removed_rows: dict[str, DocumentRow],
               moved_titles: dict[str, str], now: str, txid: str) -> str:
    """log.md's new lines: appended, undone by truncating to its old size."""
    lines = []
    added_names = {d.name for d in changes.added}
    for name, row in removed_rows.items():
        if name not in added_names:
            lines.append(pages.render_log_line(now, "remove", pages.doc_link(name, row.title),
                                               txid))
    for doc in changes.added:
        op = "update" if doc.name in removed_rows else "add"
        lines.append(pages.render_log_line(now, op, pages.doc_link(doc.name, doc.info.title),
                                           txid))
    for name, title in moved_titles.items():
        lines.append(pages.render_log_line(now, "move", pages.doc_link(name, title), txid))
    if changes.infos and not changes.recompile:
        lines.append(pages.render_log_line(now, "summarize", f"{len(changes.infos)} "
                                           "document(s)", txid))
    if changes.recompile:
        lines.append(pages.render_log_line(now, "recompile", "all pages", txid))
    return "".join(lines)


def _plan_concepts(layout: KBLayout, registry: Registry, acts: _Actions, changes: ChangeSet,
                   removed_rows: dict[str, DocumentRow]) -> dict[str, int]:
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
            acts.drop(rel)
        elif before >= 2 and not leaving and os.path.lexists(layout.root / rel):
            acts.append(rel, "".join(pages.concept_line(d.name, d.info.title) for d in arriving))
        else:
            docs = [(n, t) for n, t in registry.term_docs(term) if n not in leaving]
            docs += [(d.name, d.info.title) for d in arriving]
            acts.rewrite(rel, pages.render_concept(term, docs))
    return counts


def _plan_new_summaries(layout: KBLayout, registry: Registry, acts: _Actions,
                        infos: dict[str, DocumentInfo],
                        summary_updates: list[tuple[str, str]]) -> None:
    """Rewrite the summary page of each document given a new info."""
    for name, info in sorted(infos.items()):
        row = registry.document(name)
        if row is None:
            raise CommitFailed(f"cannot summarize {name!r}: it is not in the registry")
        content = pages.render_summary(row.name, row.ext, row.bytes, info).encode("utf-8")
        acts.rewrite(layout.summary_rel(name), content.decode("utf-8"))
        summary_updates.append((name, hashlib.sha256(content).hexdigest()))


def _plan_recompile(layout: KBLayout, registry: Registry, acts: _Actions,
                    concept_counts: dict[str, int],
                    summary_updates: list[tuple[str, str]], skip: set[str]) -> None:
    """Re-render every summary (but those in ``skip``, planned already) and
    concept page from the registry; drop concept pages that no concept backs."""
    for row in registry.documents():
        if row.name in skip:
            continue
        content = pages.render_summary(row.name, row.ext, row.bytes, row.info).encode("utf-8")
        path = layout.root / layout.summary_rel(row.name)
        if not path.exists() or path.read_bytes() != content:
            acts.rewrite(layout.summary_rel(row.name), content.decode("utf-8"))
            summary_updates.append((row.name, hashlib.sha256(content).hexdigest()))
    wanted = set()
    for term in sorted(concept_counts):
        slug = pages.concept_slug(term)
        wanted.add(f"{slug}.md")
        acts.rewrite(layout.concept_rel(slug),
                     pages.render_concept(term, registry.term_docs(term)))
    if layout.concepts_dir.is_dir():
        for entry in sorted(os.listdir(layout.concepts_dir)):
            if entry.endswith(".md") and entry not in wanted:
                acts.drop(f"wiki/concepts/{entry}")


def _free_attic_rel(layout: KBLayout, row: DocumentRow) -> str:
    rel = f"attic/{row.name}{row.ext}"
    n = 2
    while os.path.lexists(layout.root / rel):
        rel = f"attic/{row.name}-{n}{row.ext}"
        n += 1
    return rel
