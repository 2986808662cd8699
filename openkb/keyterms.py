"""Choosing a document's key terms among its candidates, against the KB.

Prepare scores candidates by the document alone (:mod:`openkb.prepare.terms`);
commit, which knows how many documents of the KB had each candidate, weighs
each by its specificity (TF-IDF: a term in most documents says nothing about
this one), keeps the best, and drops a single word when a kept phrase that
holds it is filed under the same documents ("attention" beside "attention
heads", when every document with the one has the other). Commit runs in
scan order, so the choice is the same however prepare was parallelised.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from openkb.model import DocumentInfo, TermCandidate

# A term in more than this share of the KB is not a key term of anything,
# once the KB is large enough for shares to mean something.
MAX_COMMON_SHARE = 0.4
MIN_DOCS_FOR_SHARE = 20


def specificity(df: int, n_docs: int) -> float:
    """Inverse document frequency, smoothed, for a term in ``df`` of ``n_docs``."""
    return math.log(1 + n_docs / max(df, 1))


def choose_terms(info: DocumentInfo, df: Callable[[str], int], n_docs: int
                 ) -> list[TermCandidate]:
    """``info.term_quota`` candidates, best first. ``df`` and ``n_docs``
    count the KB with this document in it."""
    weighed: list[tuple[float, str, TermCandidate]] = []
    for cand in info.candidates:
        share = df(cand.key) / max(n_docs, 1)
        if n_docs >= MIN_DOCS_FOR_SHARE and share > MAX_COMMON_SHARE:
            continue
        weighed.append((cand.score * specificity(df(cand.key), n_docs), cand.key, cand))
    weighed.sort(key=lambda w: (-w[0], w[1]))
    chosen = [cand for _, _, cand in weighed]
    phrases = [c for c in chosen if " " in c.key]
    # Alone in the KB, every word "covers the same documents" as its phrase:
    # only a second document can tell.
    covered = {c.key for c in chosen if " " not in c.key and df(c.key) >= 2
               and any(c.key in p.key.split(" ") and df(p.key) == df(c.key) for p in phrases)}
    return [c for c in chosen if c.key not in covered][:info.term_quota]
