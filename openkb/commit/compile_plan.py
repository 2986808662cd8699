"""The compile step of a plan: summary pages, concept pages and index.md
for one change, from a :class:`~openkb.compile_state.CompileState`.

A concept page is a head (title, the best definition, related concepts),
decided by its first :data:`HEAD_DOCS` documents and its oldest defining
one, then one line per document, oldest first. A concept has two documents
from its start, so a document that joins one, and brings no first
definition, appends its line: O(new lines), however large the concept. A
page whose head may change is rendered whole, which only a new concept,
one that gains its first definition, or one losing a document, needs.
(With three head documents, every concept's page was rewritten a second
time when its third document came: a third of the RFCs' concept writes.)
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Protocol

from openkb import pages
from openkb.compile_state import CompileState, TermBook
from openkb.layout import KBLayout
from openkb.model import DocumentInfo, TermUse
from openkb.prepare import minhash
from openkb.registry import RegistryWriter

HEAD_DOCS = 2
MAX_RELATED_CONCEPTS = 8


class Acts(Protocol):
    def rewrite(self, rel: str, content: str) -> None: ...
    def append(self, rel: str, content: str) -> None: ...
    def drop(self, rel: str) -> None: ...


def related_concepts(state: CompileState, key: str, head: list[TermUse]
                     ) -> list[tuple[str, str]]:
    """(key, display) of the terms that two or more of ``head`` share with ``key``."""
    counts: Counter[str] = Counter()
    surfaces: dict[str, Counter[str]] = {}
    for use in head:
        for other, surface in state.doc_terms(use.doc).items():
            if other != key:
                counts[other] += 1
                surfaces.setdefault(other, Counter())[surface] += 1
    shared = sorted((k for k, n in counts.items() if n >= 2), key=lambda k: (-counts[k], k))
    return [(k, min(surfaces[k].items(), key=lambda sc: (-sc[1], sc[0]))[0])
            for k in shared[:MAX_RELATED_CONCEPTS]]


def concept_page(state: CompileState, book: TermBook) -> str:
    uses = state.term_uses(book)
    return pages.render_concept(book.key, book.display, uses,
                                related_concepts(state, book.key, uses[:HEAD_DOCS]))


def summary_page(state: CompileState, name: str, ext: str, size: int,
                 info: DocumentInfo) -> str:
    near = [(n, state.title(n)) for n in state.near_copies(name)]
    return pages.render_summary(name, ext, size, info, near)


def plan_concepts(layout: KBLayout, state: CompileState, acts: Acts) -> dict[str, str | None]:
    """Plan every concept page the change touches; return the catalog lines
    it changes: key -> display, or None for a concept that is gone."""
    lines: dict[str, str | None] = {}
    for key in sorted(state.books):
        book = state.books[key]
        before = book.before
        was = (before.display if before is not None and before.concept else None)
        now = book.display if book.concept else None
        if was != now:
            lines[key] = now
        rel = layout.concept_rel(pages.concept_slug(key))
        if not book.concept:
            if before is not None and before.concept:
                acts.drop(rel)
            continue
        if (before is not None and before.concept and not book.leaving
                and before.count >= HEAD_DOCS and before.defined == book.defined
                and os.path.lexists(layout.root / rel)):
            acts.append(rel, "".join(pages.concept_line(u) for u in book.arriving))
        else:
            acts.rewrite(rel, concept_page(state, book))
    return lines


def write_compiled(writer: RegistryWriter, state: CompileState) -> None:
    """The rows of the change's key terms, counts and near-copies."""
    for name, uses in state.uses.items():
        writer.file_terms(name, uses)
    for name, info in state.added.items():
        writer.add_bands(name, minhash.bands(info.minhash))
    for one, other in state.pairs:
        writer.add_near_copy(one, other)
    for key in sorted(state.df):
        writer.set_candidate_df(key, state.df[key])
    for key in sorted(state.books):
        writer.set_term(key, state.state_of(state.books[key]))
    for name in sorted(state.refreshed):
        writer.update_info(name, state.refreshed[name])
