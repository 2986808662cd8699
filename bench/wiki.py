"""What the compiled wiki gives a reader, measured from its files alone, so
a KB built by any openkb (``--baseline REF``) is measured the same way.

- concepts per 1,000 documents;
- plural twins: concept pages whose titles differ only by an inflection
  (``account`` / ``accounts``), grouped by Snowball stem;
- concepts backed only by near-copies: every document on the page is a
  near-copy (MinHash of the source texts, openkb's own threshold) of every
  other;
- share of concept-page document lines that quote a sentence;
- share of summary pages with at least one related document.
"""

from __future__ import annotations

import re
from pathlib import Path

import snowballstemmer

_LINE = re.compile(r"^- \[\[summaries/([^|\]]+)\|")
_STEM = snowballstemmer.stemmer("english")


def _signature(kb: Path, name: str, cache: dict[str, list[int]]) -> list[int]:
    from openkb.prepare.minhash import signature
    if name not in cache:
        path = kb / "wiki" / "sources" / f"{name}.md"
        cache[name] = signature(path.read_text("utf-8")) if path.is_file() else []
    return cache[name]


def _only_near_copies(kb: Path, docs: list[str], cache: dict[str, list[int]]) -> bool:
    from openkb.prepare.minhash import NEAR_COPY, similarity
    sigs = [_signature(kb, d, cache) for d in docs]
    return all(similarity(a, b) >= NEAR_COPY for i, a in enumerate(sigs) for b in sigs[i + 1:])


def measure(kb: Path) -> dict[str, float]:
    concepts = sorted((kb / "wiki" / "concepts").glob("*.md"))
    summaries = list((kb / "wiki" / "summaries").glob("*.md"))
    titles: dict[str, set[str]] = {}
    lines = quoted = copies_only = 0
    cache: dict[str, list[int]] = {}
    for page in concepts:
        text = page.read_text("utf-8").split("\n")
        title = text[0].removeprefix("# ").strip().lower()
        key = " ".join(_STEM.stemWord(w) for w in re.split(r"[\W_]+", title) if w)
        titles.setdefault(key, set()).add(title)
        docs = []
        for line in text:
            match = _LINE.match(line)
            if match:
                docs.append(match.group(1))
                lines += 1
                quoted += ": “" in line
        copies_only += _only_near_copies(kb, docs, cache)
    related = sum("\n## Related\n" in p.read_text("utf-8") for p in summaries)
    n_docs = max(len(summaries), 1)
    return {
        "documents": len(summaries),
        "concepts": len(concepts),
        "concepts per 1,000 documents": 1000 * len(concepts) / n_docs,
        "plural twins (extra pages)": sum(len(v) - 1 for v in titles.values()),
        "concepts backed only by near-copies": copies_only,
        "concept lines with a quoted sentence": quoted / max(lines, 1),
        "summaries with a related document": related / n_docs,
    }


if __name__ == "__main__":
    import sys
    for kb_dir in sys.argv[1:]:
        print(kb_dir)
        for metric, value in measure(Path(kb_dir)).items():
            print(f"  {metric}: {value:.3g}" if isinstance(value, float) else
                  f"  {metric}: {value}")
