"""index.md: splicing a commit's changes gives the bytes a full render gives."""

from __future__ import annotations

import random

from openkb.index_md import render_index, splice_index


def test_splice_matches_a_full_render_over_random_histories() -> None:
    rng = random.Random(1234)
    docs: dict[str, tuple[str, str]] = {}
    concepts: dict[str, tuple[str, int]] = {}
    text = render_index([], [])
    for _ in range(300):
        removed = rng.sample(sorted(docs), k=min(len(docs), rng.randint(0, 2)))
        added = []
        for _ in range(rng.randint(0, 4)):
            name = f"doc-{rng.randint(0, 500)}"
            if name not in docs or name in removed:
                title = f"Title {rng.randint(0, 9)} | [x]"
                added.append((name, title, rng.choice(["pdf", "text"])))
        # Keys hold no hyphen (slugs turn spaces into them), displays anything.
        changed: dict[str, tuple[str, int] | None] = {
            f"term {rng.randint(0, 60)}": (rng.choice(["Terms", "term | x"]), rng.randint(2, 5))
            if rng.random() < 0.7 else None for _ in range(rng.randint(0, 6))}
        for name in removed:
            docs.pop(name)
        for name, title, kind in added:
            docs[name] = (title, kind)
        for term, shown in changed.items():
            if shown is not None:
                concepts[term] = shown
            else:
                concepts.pop(term, None)
        spliced = splice_index(text, added=added, removed=removed, concepts=changed)
        full = render_index([(n, t, k) for n, (t, k) in docs.items()],
                            [(key, d, c) for key, (d, c) in concepts.items()])
        assert spliced == full
        text = spliced


def test_splice_refuses_a_file_it_did_not_write() -> None:
    assert splice_index("# My own index\n\nhand written\n", added=[], removed=[],
                        concepts={}) is None
