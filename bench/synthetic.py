"""A KB of any size in seconds: synthetic documents inserted straight into
the registry, with the catalog pages they imply, and nothing converted.

What a commit of *new* documents reads of the KB is the registry and the
catalog (index.md and the pages its documents fall on); summaries, sources
and concept pages of the synthetic documents are not written, since no
commit of other documents touches them (their key terms, ``synterm<N>``, are
no real document's). The search index holds none of their text: FTS5's
segment merges are what grows with it, and the growth bench measures those
on real adds.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import sqlite3
from pathlib import Path

from openkb import catalog, fsio

TERMS_PER_DOC = 2
VOCABULARY = 20_000


def _names(count: int) -> list[str]:
    # Spread over the whole catalog, as real names are, not all under "syn-".
    return sorted(f"{hashlib.blake2b(str(i).encode(), digest_size=4).hexdigest()}-synthetic-{i}"
                  for i in range(count))


def fill(kb: Path, count: int, *, seed: int = 5) -> None:
    """Put ``count`` synthetic documents into the (new, empty) KB at ``kb``."""
    rng = random.Random(seed)
    names = _names(count)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(VOCABULARY)))
    conn = sqlite3.connect(kb / ".openkb" / "kb.sqlite")
    info = '{"title":"Synthetic","kind":"markdown","outline":[],"lead":"","terms":[]}'
    doc_terms: dict[str, set[str]] = {}
    with conn:
        conn.executemany(
            "INSERT INTO documents VALUES (?, ?, ?, '.md', 'markdown', ?, 1000, ?, ?, ?, "
            "'2026-01-01T00:00:00Z', 'synthetic')",
            ((name, hashlib.sha256(name.encode()).hexdigest(), f"/synthetic/{name}.md",
              f"Synthetic {name}", info, "0" * 64, "0" * 64) for name in names))
        for name in names:
            for term in set(rng.choices(range(VOCABULARY), cum_weights=cumulative,
                                         k=TERMS_PER_DOC)):
                doc_terms.setdefault(f"synterm{term}", set()).add(name)
        conn.executemany("INSERT INTO doc_terms VALUES (?, ?)",
                         ((term, name) for term, docs in doc_terms.items() for name in docs))
        conn.executemany("INSERT INTO terms VALUES (?, ?)",
                         ((term, len(docs)) for term, docs in doc_terms.items()))
        rendered = catalog.render_catalog(
            ((name, f"Synthetic {name}", "markdown") for name in names),
            sorted(term for term, docs in doc_terms.items() if len(docs) >= 2))
        conn.execute("INSERT INTO meta VALUES ('index_sha256', ?) ON CONFLICT (key) DO UPDATE "
                     "SET value = excluded.value",
                     (hashlib.sha256(rendered.index.encode()).hexdigest(),))
    conn.close()
    (kb / "wiki" / "index.md").write_text(rendered.index, encoding="utf-8")
    for rel, content in rendered.pages.items():
        path = kb / rel
        if not path.parent.is_dir():
            fsio.makedirs(path.parent)
        path.write_text(content or "", encoding="utf-8")


def fill_from_files(kb: Path, folder: Path) -> int:
    """Register every file under ``folder`` in the (new, empty) KB at ``kb``
    as a committed document, with its stat cache entry, as a first sync
    would leave them, but without converting anything: what a re-sync of
    unchanged files reads is the registry (documents by origin, the stat
    cache, documents by content) and the files' stat, never the wiki."""
    import os
    import time

    from openkb.digest import sha256_file

    info = '{"title":"Note","kind":"markdown","outline":[],"lead":"","terms":[]}'
    docs, stats = [], []
    for path in sorted(folder.rglob("*.md")):
        st = path.stat()
        sha = sha256_file(path)
        origin = os.path.abspath(path)
        docs.append((path.stem, sha, origin, path.stem, info, "0" * 64, "0" * 64))
        stats.append((origin, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                      sha, time.time_ns()))
    conn = sqlite3.connect(kb / ".openkb" / "kb.sqlite")
    with conn:
        conn.executemany(
            "INSERT INTO documents VALUES (?, ?, ?, '.md', 'markdown', ?, 1000, ?, ?, ?, "
            "'2026-01-01T00:00:00Z', 'synthetic')", docs)
        conn.executemany("INSERT INTO file_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?)", stats)
    conn.close()
    return len(docs)


def commit_size(out: Path, runs: int, quick: bool) -> list[tuple[str, str, str]]:
    """One group commit of the same 16 documents on a KB of 10,000 and of
    1,000,000 (100,000 with --quick) synthetic documents: time and bytes."""
    from bench import corpus
    from bench.run import add, fresh_kb, median, openkb

    big = 100_000 if quick else 1_000_000
    batch = corpus.subset(corpus.generate(out / "gen-16", 16, seed=3), range(16),
                          out / "batch-16")
    rows, measured = [], {}
    for count in (10_000, big):
        kb = fresh_kb(out / f"kb-synthetic-{count}")
        fill(kb, count)
        times, written = [], 0
        for _ in range(1 if quick else runs):
            result = add(kb, [batch], jobs=1, jsonl=out / "size.jsonl")
            commits = [e for e in result.events
                       if e.get("event") == "commit" and e.get("kind") == "done"]
            times.append(sum(e["dur_ms"] for e in commits))
            written = sum(e["page_bytes"] for e in commits)
            names = sorted({n for e in commits
                            for n in (e["doc"] if isinstance(e["doc"], list) else [e["doc"]])})
            assert len(names) == 16 and openkb("--kb", str(kb), "remove", *names).returncode == 0
        measured[count] = median(times)
        rows.append((f"commits of the same 16 docs on a KB of {count:,}",
                     f"{measured[count]:.1f} ms, {written / 1024:.0f} KiB of pages written", ""))
    rows.append((f"commit time ratio {big:,} / 10,000", f"{measured[big] / measured[10_000]:.2f}",
                 "<= 1.3"))
    return rows
