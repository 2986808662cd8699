"""The prompt, versioned: the one place its words live.

Change anything here that changes what is sent, and bump
:data:`PROMPT_VERSION`: it is part of every cache key, so replies to the old
prompt are not reused for the new one (nor deleted: ``verify --repair``
prunes what no document uses).

Long documents: the **lead** of the document, cut at a paragraph boundary
within the input budget (``llm.input_chars``), plus its outline (the
headings of the whole document, a bounded share of the budget). Not a
chunked map-reduce, because:

- one call per document keeps the cost, the latency and the cache key one
  per document, so a crash loses at most the calls in flight, and a re-run
  pays nothing;
- map-reduce multiplies the calls (and the 429s) by the length of the
  document, and its partial replies would need a cache of their own;
- what a summary page needs (what the document is, and what it covers) is in
  its opening (abstract, introduction) and its headings far more often than
  in its middle.

The reply is taken as plain text: no JSON mode, no structured output, which
many local servers lack.
"""

from __future__ import annotations

from openkb.model import OutlineEntry

PROMPT_VERSION = "summary-v1"

SYSTEM = (
    "You write the summary section of a wiki page about one document. "
    "Write one to three short paragraphs of plain prose (no headings, no lists, "
    "no preamble such as 'This document'), in the language of the document. "
    "Say what the document is, its main points, and what a reader would use it for. "
    "Use only what the text says."
)

# The outline may take at most this share of the input budget.
OUTLINE_SHARE = 0.2


def lead_within(text: str, budget: int) -> tuple[str, bool]:
    """The opening of ``text`` in at most ``budget`` characters, cut at the
    last paragraph (else line, else word) break; and whether it was cut."""
    if len(text) <= budget:
        return text, False
    head = text[:budget]
    for brk in ("\n\n", "\n", " "):
        cut = head.rfind(brk)
        if cut >= budget // 2:
            return head[:cut], True
    return head, True


def outline_within(outline: list[OutlineEntry], budget: int) -> str:
    lines, used = [], 0
    top = min((e.level for e in outline), default=1)
    for entry in outline:
        line = f"{'  ' * max(0, min(entry.level - top, 5))}- {' '.join(entry.title.split())}"
        if used + len(line) + 1 > budget:
            lines.append("- …")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def build_messages(title: str, text: str, outline: list[OutlineEntry],
                   input_chars: int) -> list[dict[str, str]]:
    """The chat messages for one document, within ``input_chars``."""
    outline_text = outline_within(outline, int(input_chars * OUTLINE_SHARE)) if outline else ""
    lead, cut = lead_within(text.strip(), max(200, input_chars - len(outline_text)))
    parts = [f"Title: {title}"]
    if outline_text:
        parts.append(f"Outline of the whole document:\n{outline_text}")
    parts.append(("Opening of the document (the rest is cut):" if cut else "Document:")
                 + f"\n\n{lead}")
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": "\n\n".join(parts)}]


def clean_reply(reply: str) -> str:
    """The reply as the page's summary section: trimmed, blank lines
    squeezed, a leading heading (some models add one anyway) dropped, and
    any other heading made bold text, so the page keeps its own sections."""
    lines = reply.strip().splitlines()
    while lines and (lines[0].lstrip().startswith("#") or not lines[0].strip()):
        lines.pop(0)
    out: list[str] = []
    for line in lines:
        if line.lstrip().startswith("#"):
            line = f"**{line.strip().lstrip('#').strip()}**"
        if line.strip() or (out and out[-1]):
            out.append(line.rstrip() if line.strip() else "")
    return "\n".join(out).strip()
