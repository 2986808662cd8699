"""Regenerate attention-survey.pdf with the project's own minimal PDF writer.

    python examples/make_example_pdf.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from pdfgen import make_pdf  # noqa: E402

PAGES = [
    "A short survey of attention in transformers\n\n"
    "Attention lets a model weigh the parts of its input by relevance.\n"
    "The transformer replaced recurrence with self-attention entirely,\n"
    "and multi-head attention splits that computation across attention heads.",
    "Attention heads\n\n"
    "Each of the attention heads has its own query, key and value projections.\n"
    "Analyses show attention heads specialise: positional heads, syntactic\n"
    "heads and induction heads. Several attention heads can be pruned.",
    "Efficient attention\n\n"
    "Self-attention costs grow with the square of the sequence length.\n"
    "Sparse attention, linear attention and the KV cache reduce the cost\n"
    "of the transformer at training time and at inference time.",
]

if __name__ == "__main__":
    data = make_pdf(PAGES, title="A short survey of attention",
                    outline=[("Introduction", 0), ("Attention heads", 1),
                             ("Efficient attention", 2)], compress=True)
    (HERE / "attention-survey.pdf").write_bytes(data)
