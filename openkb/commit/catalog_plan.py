"""The compile step's catalog: index.md and the catalog pages a change
rewrites (see :mod:`openkb.catalog` for why they are paged)."""

from __future__ import annotations

import hashlib
import os

from openkb import catalog
from openkb.catalog import CONCEPTS, DOCUMENTS, SHELVES, Catalog
from openkb.layout import KBLayout
from openkb.model import PreparedDocument
from openkb.registry import Registry

INDEX_SHA_KEY = "index_sha256"


def full_catalog(layout: KBLayout, documents: list[tuple[str, str, str]],
                 concepts: list[str]) -> Catalog:
    """The whole catalog, rendered from scratch; pages on disk that it no
    longer has are dropped."""
    result = catalog.render_catalog(sorted(documents), sorted(concepts))
    for shelf in SHELVES:
        folder = layout.root / "wiki" / "catalog" / shelf.kind
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            continue
        for name in names:
            rel = f"wiki/catalog/{shelf.kind}/{name}"
            if name.endswith(".md") and rel not in result.pages:
                result.pages[rel] = None
    return result


def next_catalog(layout: KBLayout, registry: Registry, added: list[PreparedDocument],
                 removed: list[str], concept_counts: dict[str, int]) -> Catalog:
    """The catalog after a change: spliced, page by page, when index.md is
    exactly what openkb last wrote; else rendered whole."""
    doc_changes: dict[str, str | None] = dict.fromkeys(removed)
    doc_changes.update({d.name: catalog.doc_entry(d.name, d.info.title, d.info.kind)
                        for d in added})
    before = registry.term_counts_of(list(concept_counts))
    # Only a term that becomes a concept or stops being one changes a line.
    concept_changes: dict[str, str | None] = {
        term: catalog.concept_entry(term) if count >= 2 else None
        for term, count in concept_counts.items() if (count >= 2) != (before[term] >= 2)}
    try:
        current = layout.index_md.read_bytes()
    except FileNotFoundError:
        current = None
    if current is not None and \
            hashlib.sha256(current).hexdigest() == registry.meta(INDEX_SHA_KEY):
        spliced = catalog.splice_catalog(
            current.decode("utf-8"),
            documents=(lambda key, n: [(name, catalog.doc_entry(name, title, kind)) for
                                       name, title, kind in registry.catalog_from(key, n)],
                       doc_changes),
            concepts=(lambda key, n: [(term, catalog.concept_entry(term)) for
                                      term in registry.concepts_from(key, n)],
                      concept_changes))
        if spliced is not None:
            return spliced
    documents = {name: (name, title, kind) for name, title, kind in registry.catalog()}
    for name in removed:
        documents.pop(name, None)
    documents.update({d.name: (d.name, d.info.title, d.info.kind) for d in added})
    concepts = {term for term, _ in registry.concepts()}
    for term, count in concept_counts.items():
        if count >= 2:
            concepts.add(term)
        else:
            concepts.discard(term)
    return full_catalog(layout, list(documents.values()), list(concepts))


__all__ = ["CONCEPTS", "DOCUMENTS", "INDEX_SHA_KEY", "full_catalog", "next_catalog"]
