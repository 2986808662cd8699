"""What a change does to key terms, concepts and near-copies, worked out in
memory over the registry before anything is written.

A commit feeds :class:`CompileState` its removals, then its additions in
scan order; each addition sees the KB as it would be had every earlier
document committed alone, so a group commit chooses exactly what one
commit per document would (jobs 1 and jobs N give the same KB). Every
registry question is bounded by the change: an indexed lookup per key
term, per MinHash band, per near-copy. A recompile feeds the same class
every document, oldest first, over no registry at all: the KB rebuilt from
its documents alone.

A term is a *concept*, with a page, once two of its documents are not
near-copies of each other: five versions of one page make no concept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from openkb.keyterms import choose_terms, specificity
from openkb.model import DocumentInfo
from openkb.prepare import minhash
from openkb.registry import Registry
from openkb.registry.rows import TermState, TermUse

# A page is titled by the form its first documents use most. Two: a concept
# has two documents from its start, so its title never changes afterwards
# and a later document appends its line without rewriting the page.
TITLE_DOCS = 2
RELATED_MAX_DF = 100  # a term filed under more documents relates none of them
MAX_RELATED = 5


@dataclass
class TermBook:
    """One key term the change touches: before, and what arrives and leaves."""

    key: str
    before: TermState | None
    count: int
    concept: bool
    defined: bool
    arriving: list[TermUse] = field(default_factory=list)
    leaving: set[str] = field(default_factory=set)
    stored: list[TermUse] | None = None  # the registry's uses, minus leaving, once loaded
    display: str = ""


class CompileState:
    def __init__(self, registry: Registry | None) -> None:
        self.registry = registry
        self.n_docs = registry.count_documents() if registry else 0
        self.df: dict[str, int] = {}
        self.books: dict[str, TermBook] = {}
        self.removed: set[str] = set()
        self.added: dict[str, DocumentInfo] = {}
        self.titles: dict[str, str] = {}
        self.uses: dict[str, list[tuple[str, TermUse]]] = {}  # added doc -> (key, use)
        self.band_docs: dict[int, list[str]] = {}
        self.pairs: list[tuple[str, str]] = []
        self.stale_summaries: set[str] = set()  # stored docs whose near-copies change
        self.refreshed: dict[str, DocumentInfo] = {}  # stored docs with new related ones

    # -- lookups over the registry and what this change added ---------------
    def candidate_df(self, key: str) -> int:
        if key not in self.df:
            self.df[key] = self.registry.candidate_df(key) if self.registry else 0
        return self.df[key]

    def title(self, name: str) -> str:
        if name not in self.titles and self.registry is not None:
            self.titles[name] = self.registry.title_of(name) or name
        return self.titles.get(name, name)

    def signature(self, name: str) -> list[int]:
        if name in self.added:
            return self.added[name].minhash
        return self.registry.signature(name) if self.registry else []

    def near_copy(self, one: str, other: str) -> bool:
        return minhash.similarity(self.signature(one), self.signature(other)) >= minhash.NEAR_COPY

    def near_copies(self, name: str) -> list[str]:
        found = {b if a == name else a for a, b in self.pairs if name in (a, b)}
        if self.registry is not None and name not in self.added:
            found.update(n for n, _ in self.registry.near_copies(name))
        return sorted(found - self.removed)

    def book(self, key: str) -> TermBook:
        if key not in self.books:
            state = self.registry.term_state(key) if self.registry else None
            self.books[key] = TermBook(key, state, state.count if state else 0,
                                       state.concept if state else False,
                                       state.defined if state else False,
                                       display=state.display if state else "")
        return self.books[key]

    def term_uses(self, book: TermBook) -> list[TermUse]:
        """Every document filed under the term after the change, oldest first."""
        if book.stored is None:
            stored = self.registry.term_uses(book.key) if self.registry and book.before else []
            book.stored = [u for u in stored if u.doc not in book.leaving]
        return book.stored + book.arriving

    def head_uses(self, book: TermBook, n: int) -> list[TermUse]:
        if book.stored is None and not book.leaving and self.registry and book.before:
            return (self.registry.term_uses(book.key, n) + book.arriving)[:n]
        return self.term_uses(book)[:n]

    def doc_terms(self, name: str) -> dict[str, str]:
        """key -> surface of a document's key terms."""
        if name in self.uses:
            return {key: use.surface for key, use in self.uses[name]}
        return self.registry.doc_term_surfaces(name) if self.registry else {}

    # -- the change ---------------------------------------------------------
    def remove(self, name: str, info: DocumentInfo, term_keys: list[str]) -> None:
        self.n_docs -= 1
        self.removed.add(name)
        for cand in info.candidates:
            self.df[cand.key] = self.candidate_df(cand.key) - 1
        for key in term_keys:
            book = self.book(key)
            book.leaving.add(name)
            book.count -= 1
        if self.registry is not None:
            self.stale_summaries.update(n for n, _ in self.registry.near_copies(name))

    def add(self, name: str, title: str, info: DocumentInfo) -> None:
        """File a document: choose its key terms (setting ``info.terms``,
        ``info.term_keys``, ``info.related``) and find its near-copies."""
        self.n_docs += 1
        self.added[name] = info
        self.titles[name] = title
        for cand in info.candidates:
            self.df[cand.key] = self.candidate_df(cand.key) + 1
        chosen = choose_terms(info, self.candidate_df, self.n_docs)
        info.terms = [c.surface for c in chosen]
        info.term_keys = [c.key for c in chosen]
        self._find_near_copies(name, info)
        self.uses[name] = []
        for cand in chosen:
            book = self.book(cand.key)
            use = TermUse(name, title, cand.surface, cand.context, cand.defines)
            if not book.concept:
                book.concept = any(not self.near_copy(name, u.doc) for u in self.term_uses(book))
            book.arriving.append(use)
            book.count += 1
            book.defined = book.defined or cand.defines
            self.uses[name].append((cand.key, use))
        info.related = self.related(name)
        for other, _ in info.related:
            self._give_related(other)

    def _give_related(self, name: str) -> None:
        """A document's related list is chosen when it is filed, among the
        documents before it, and is not refreshed later: each refresh is a
        summary page to rewrite, measured at a third of the RFCs' commit
        time. Only a document that had none takes the newcomer that
        shares its terms has its list worked out again, so the first
        documents of a subject are not left with none: a page rewritten
        once in its life, at most."""
        info = self.added.get(name) or self.refreshed.get(name)
        if info is None and self.registry is not None and self.registry.has_related(name):
            return
        if info is None and self.registry is not None:
            row = self.registry.document(name)
            info = row.info if row is not None else None
        if info is None or info.related:
            return
        info.related = self.related(name)
        if info.related and name not in self.added:
            self.refreshed[name] = info

    def _find_near_copies(self, name: str, info: DocumentInfo) -> None:
        keys = minhash.bands(info.minhash)
        candidates: set[str] = set()
        if self.registry is not None:
            candidates = self.registry.docs_in_bands(keys) - self.removed
        for band in keys:
            candidates.update(self.band_docs.get(band, ()))
            self.band_docs.setdefault(band, []).append(name)
        for other in sorted(candidates):
            if other != name and self.near_copy(name, other):
                self.pairs.append((other, name))
                if other not in self.added:
                    self.stale_summaries.add(other)

    def related(self, name: str) -> list[tuple[str, str]]:
        """The documents filed so far that share the most specific key
        terms with ``name``, near-copies aside."""
        scores: Counter[str] = Counter()
        skip = {name, *self.near_copies(name)}
        for key in self.doc_terms(name):
            book = self.book(key)
            if book.count > RELATED_MAX_DF:
                continue
            weight = specificity(book.count, self.n_docs)
            names = [u.doc for u in book.arriving]
            if self.registry is not None and book.before:
                names += [n for n in self.registry.term_doc_names(key, RELATED_MAX_DF)
                          if n not in self.removed]
            for other in set(names) - skip:
                scores[other] += weight
        best = sorted(scores.items(), key=lambda kv: (-round(kv[1], 9), kv[0]))[:MAX_RELATED]
        return [(other, self.title(other)) for other, _ in best]

    def finish(self) -> None:
        """Settle what removals leave open: is each term still a concept,
        still defined; and each touched term's display form."""
        for book in self.books.values():
            if book.leaving:
                uses = self.term_uses(book)
                book.concept = _has_distinct_pair(self, [u.doc for u in uses])
                book.defined = any(u.defines for u in uses)
            unchanged = (book.before is not None and not book.leaving
                         and book.before.count >= TITLE_DOCS)
            if not unchanged and book.count > 0:
                book.display = display_form(self.head_uses(book, TITLE_DOCS))

    def state_of(self, book: TermBook) -> TermState:
        return TermState(book.count, book.concept, book.defined, book.display)


def display_form(uses: list[TermUse]) -> str:
    """The form most of ``uses`` give the term; the earliest on a tie."""
    counts = Counter(u.surface for u in uses)
    return max(uses, key=lambda u: counts[u.surface]).surface if uses else ""


def _has_distinct_pair(state: CompileState, names: list[str]) -> bool:
    """Two of ``names`` are not near-copies of each other."""
    if len(names) < 2:
        return False
    first, rest = names[0], names[1:]
    if any(not state.near_copy(first, other) for other in rest):
        return True
    return any(not state.near_copy(a, b) for i, a in enumerate(rest) for b in rest[i + 1:])
