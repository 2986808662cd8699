"""A deterministic generated corpus of small Markdown files.

Words are drawn from a fixed vocabulary with Zipf-like frequencies, so key
terms (and concept pages) are shared between documents the way they are in
real notes: a few terms by thousands of documents, most by a handful.
"""

from __future__ import annotations

import random
from pathlib import Path

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "zo", "pe", "qu", "di", "fa",
             "go", "hu", "je")


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def generate(root: Path, count: int, *, seed: int = 42, prefix: str = "note") -> Path:
    """``count`` documents under ``root`` (100 per folder); reused if present."""
    marker = root / f".complete-{count}-{seed}"
    if marker.exists():
        return root
    rng = random.Random(seed)
    vocab = vocabulary(3000, rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    for i in range(count):
        words = rng.choices(vocab, weights, k=220)
        title = f"{words[0].title()} {words[1]} notes {i}"
        paragraphs = [" ".join(words[j:j + 40]).capitalize() + "." for j in range(0, 200, 40)]
        body = (f"# {title}\n\n{paragraphs[0]}\n\n## {words[2].title()} and {words[3]}\n\n"
                + "\n\n".join(paragraphs[1:]) + "\n")
        folder = root / f"{prefix}-{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{prefix}-{i:05d}.md").write_text(body)
    marker.write_text("")
    return root


def subset(root: Path, names: range, target: Path) -> Path:
    """Hard links to some generated files, so a batch is cheap to stage."""
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(root.rglob("*.md"))
    for i in names:
        link = target / files[i].name
        if not link.exists():
            link.hardlink_to(files[i])
    return target
