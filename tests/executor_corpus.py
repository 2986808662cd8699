"""A small mixed corpus for comparing executors: Markdown, text, HTML, PDFs
(one long enough to be read in parts by several workers), and a file that
fails."""

from __future__ import annotations

from pathlib import Path

from conftest import markdown_doc, write_tree
from pdfgen import make_pdf

from openkb import api
from openkb.prepare.parts import SPLIT_MIN_BYTES
from openkb.progress import Progress


def mixed_corpus(root: Path, notes: int = 24) -> Path:
    files: dict[str, str | bytes] = {
        f"notes/note-{i:03d}.md": markdown_doc(f"Note {i}", f"topic{i % 7}", "shared theme")
        for i in range(notes)}
    files["plain.txt"] = "Plain text\n\nabout pears and pears and cherries, cherries.\n"
    files["page.html"] = ("<html><head><title>A page</title></head><body><h1>Heading</h1>"
                          "<p>Apples and oranges, oranges and apples.</p></body></html>")
    files["empty.md"] = ""
    files["short.pdf"] = make_pdf(["Short PDF about apples and pears.", "Second page."],
                                  title="Short one")
    line = "Long document text about distributed preparation of files. " * 12
    pages: list[str] = []
    long_pdf = b""
    while len(long_pdf) < SPLIT_MIN_BYTES:
        pages += [f"Page {len(pages) + 1}. {line}"] * 40
        long_pdf = make_pdf(pages, title="Long one", outline=[("Start", 0), ("Later", 10)])
    files["long.pdf"] = long_pdf
    return write_tree(root, files)


def new_kb(tmp_path: Path, name: str = "kb", config: str = "") -> Path:
    """A new KB under ``tmp_path``, with ``config`` as its config.yaml if given."""
    kb = tmp_path / name
    api.init(str(kb))
    if config:
        (kb / ".openkb" / "config.yaml").write_text(config)
    return kb


def count_documents(kb: Path) -> int:
    return len(api.list_documents(str(kb), Progress()))
