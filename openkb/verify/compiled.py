"""The invariants of the compiled tables (key terms, concepts,
near-copies), checked against the documents' own rows."""

from __future__ import annotations

from collections import Counter, defaultdict

from openkb.prepare import minhash
from openkb.registry import Registry


def _distinct_pair(names: list[str], sigs: dict[str, list[int]]) -> bool:
    def near(a: str, b: str) -> bool:
        return minhash.similarity(sigs.get(a, []), sigs.get(b, [])) >= minhash.NEAR_COPY
    return any(not near(a, b) for i, a in enumerate(names) for b in names[i + 1:])


def compiled_problems(registry: Registry) -> list[str]:
    """What is wrong, one line each; empty when every table agrees."""
    problems: list[str] = []
    docs = {row.name: row.info for row in registry.documents()}
    sigs = {name: info.minhash for name, info in docs.items()}
    rows = registry.compiled_rows()
    if registry.count_documents() != len(docs):
        problems.append(f"the registry's document count says {registry.count_documents()}, "
                        f"it holds {len(docs)}")
    df = Counter(c.key for info in docs.values() for c in info.candidates)
    if dict(df) != dict(rows["term_df"]):
        problems.append("candidate term counts (term_df) do not match the documents")
    filed: dict[str, set[str]] = defaultdict(set)
    by_term: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for term, doc, _, _, defines in rows["doc_terms"]:
        filed[doc].add(term)
        by_term[term].append((doc, bool(defines)))
    for name, info in docs.items():
        if filed.get(name, set()) != set(info.term_keys):
            problems.append(f"{name}: filed key terms differ from its chosen ones")
    for term, _, concept, defined, _ in rows["terms"]:
        uses = by_term.get(term, [])
        if bool(concept) != _distinct_pair([d for d, _ in uses], sigs):
            problems.append(f"term {term!r}: concept flag is wrong")
        if bool(defined) != any(d for _, d in uses):
            problems.append(f"term {term!r}: defined flag is wrong")
    bands = {(band, name) for name, s in sigs.items() for band in minhash.bands(s)}
    if bands != set(rows["doc_bands"]):
        problems.append("MinHash bands do not match the documents' signatures")
    pairs = set(rows["near_copies"])
    for one, other in sorted(pairs):
        if (other, one) not in pairs:
            problems.append(f"near-copies {one!r} and {other!r} are recorded one way only")
        elif minhash.similarity(sigs.get(one, []), sigs.get(other, [])) < minhash.NEAR_COPY:
            problems.append(f"{one!r} and {other!r} are recorded as near-copies but are not")
    return problems
