"""Regenerate attention-survey.pdf with the project's own minimal PDF writer
(tests/pdfgen.py), so the example PDF has a known source:

    python examples/make_example_pdf.py

The output is byte-for-byte reproducible; a test checks the committed file
against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from pdfgen import make_pdf  # noqa: E402

TITLE = "A short survey of attention in transformers"
PAGES = [
    "A short survey of attention in transformers\n"
    "\n"
    "Attention lets a model weigh the parts of its input by relevance.\n"
    "The transformer (Vaswani et al., 2017) replaced recurrence with\n"
    "self-attention entirely, and multi-head attention splits that\n"
    "computation across several attention heads. This survey covers what\n"
    "the attention heads learn and how to make self-attention cheaper.",

    "Attention heads\n"
    "\n"
    "Each of the attention heads has its own query, key and value projections.\n"
    "Analyses show attention heads specialise: positional heads, syntactic\n"
    "heads and induction heads. Several attention heads can be pruned with\n"
    "little loss, and a transformer trained with fewer attention heads per\n"
    "layer often matches one trained with more.",

    "Efficient attention\n"
    "\n"
    "Self-attention costs grow with the square of the sequence length.\n"
    "Sparse attention restricts each token to a window; linear attention\n"
    "replaces the softmax with a kernel; FlashAttention keeps the exact\n"
    "result but never writes the full attention matrix to memory. At\n"
    "inference time the KV cache avoids recomputing the keys and values\n"
    "of a transformer decoder.",
]
OUTLINE = [("Introduction", 0), ("Attention heads", 1), ("Efficient attention", 2)]


def build() -> bytes:
    return make_pdf(PAGES, title=TITLE, outline=OUTLINE, compress=True)


if __name__ == "__main__":
    (HERE / "attention-survey.pdf").write_bytes(build())
