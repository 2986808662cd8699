"""Planning a recompile: the compiled part of the KB rebuilt from its
documents alone.

Every document is filed again, oldest first, into a fresh
:class:`~openkb.compile_state.CompileState`, exactly as one commit per
document would have filed it; then every summary, concept page and
index.md is rendered from that state. With no removal in the KB's history
this gives, byte for byte, the pages the commits wrote (a test holds it to
that); after removals it files documents as if the removed had never
been. A document compiled by an older openkb
(no candidate terms, no MinHash signature) is analysed again from its
source text under ``wiki/sources``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from openkb import pages
from openkb.commit.compile_plan import Acts, concept_page, summary_page, write_compiled
from openkb.compile_state import CompileState
from openkb.layout import KBLayout
from openkb.model import DocumentInfo
from openkb.registry import DocumentRow, Registry, RegistryWriter


@dataclass
class Recompiled:
    state: CompileState
    infos: dict[str, DocumentInfo] = field(default_factory=dict)
    summary_updates: list[tuple[str, str]] = field(default_factory=list)
    concepts: list[tuple[str, str]] = field(default_factory=list)  # (key, display)

    def write(self, writer: RegistryWriter) -> None:
        writer.reset_compiled()
        write_compiled(writer, self.state)
        for name, info in self.infos.items():
            writer.update_info(name, info)


def reanalysed(layout: KBLayout, row: DocumentRow, info: DocumentInfo) -> DocumentInfo:
    """``info`` (the row's, or a new one for it) with candidate terms and a
    signature, from the source text if an older openkb compiled it without."""
    if info.candidates or info.minhash:
        return info
    from openkb.prepare.minhash import signature
    from openkb.prepare.terms import candidate_terms
    try:
        text = (layout.root / layout.source_rel(row.name)).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return info  # verify reports the lost source; repair converts it again
    info.candidates = candidate_terms(text, info.title, 3 * info.term_quota)
    info.minhash = signature(text)
    return info


def plan_recompile(layout: KBLayout, registry: Registry, acts: Acts,
                   infos: dict[str, DocumentInfo]) -> Recompiled:
    """Re-render every page; drop concept pages that no concept backs.
    ``infos`` replaces some documents' info (new LLM summaries)."""
    state = CompileState(None)
    rows = registry.documents_in_order()
    result = Recompiled(state)
    for row in rows:
        info = reanalysed(layout, row, infos.get(row.name, row.info))
        state.add(row.name, row.title, info)
        result.infos[row.name] = info
    state.finish()
    for row in rows:
        info = result.infos[row.name]
        content = summary_page(state, row.name, row.ext, row.bytes, info).encode("utf-8")
        path = layout.root / layout.summary_rel(row.name)
        if not path.exists() or path.read_bytes() != content:
            acts.rewrite(layout.summary_rel(row.name), content.decode("utf-8"))
        sha = hashlib.sha256(content).hexdigest()
        if sha != row.summary_sha256:
            result.summary_updates.append((row.name, sha))
    wanted = set()
    for key in sorted(state.books):
        book = state.books[key]
        if not book.concept:
            continue
        slug = pages.concept_slug(key)
        wanted.add(f"{slug}.md")
        acts.rewrite(layout.concept_rel(slug), concept_page(state, book))
        result.concepts.append((key, book.display))
    if layout.concepts_dir.is_dir():
        for entry in sorted(os.listdir(layout.concepts_dir)):
            if entry.endswith(".md") and entry not in wanted:
                acts.drop(f"wiki/concepts/{entry}")
    return result
