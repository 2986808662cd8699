"""For each key term, the sentence of the document where it matters most.

A concept page quotes it beside the document's link (keyword in context),
and the best definition found ("A cookie is a small piece of data ...")
becomes the page's lead. A sentence that defines the term wins; then one
that names it more often and with more of the document's other terms;
sentences too short to say anything or too long to quote lose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from openkb.prepare.inline import strip_inline_markup

MAX_SENTENCES = 5_000
MAX_QUOTE_CHARS = 300
MIN_QUOTE_CHARS = 30
_NOT_PROSE = re.compile(r"^\s*(#|\||```|~~~|!\[|<|=+\s*$|-+\s*$)")
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_LIST_MARK = re.compile(r"^\s*(?:[-*+>]|\d+[.)])\s+")
_WORD = re.compile(r"[^\W\d_]+")
_ARTICLES = ("the ", "a ", "an ")
# Stems of the verbs that follow a term its sentence defines.
_DEFINING = ("is ", "are ", "refer ", "mean ", "denot ", "repres ", "describ ", "defin ")


def _sentences(text: str) -> Iterator[str]:
    """Sentences of the prose paragraphs (headings, tables, code left out)."""
    count = 0
    for paragraph in _paragraphs(text):
        prose = strip_inline_markup(paragraph)
        for sentence in _SPLIT.split(prose):
            yield sentence
            count += 1
            if count >= MAX_SENTENCES:
                return


def _paragraphs(text: str) -> Iterator[str]:
    """Runs of prose lines; each list item is a paragraph of its own."""
    lines: list[str] = []
    for line in text.split("\n"):
        item = _LIST_MARK.match(line)
        if not line.strip() or item or _NOT_PROSE.match(line) or line.startswith(("    ", "\t")):
            if lines:
                yield " ".join(lines)
            lines = []
            if item:
                lines.append(line[item.end():])
        else:
            lines.append(line.strip())
    if lines:
        yield " ".join(lines)


def _quote(sentence: str) -> str:
    if len(sentence) <= MAX_QUOTE_CHARS:
        return sentence
    cut = sentence.rfind(" ", 0, MAX_QUOTE_CHARS)
    return sentence[: cut if cut > MAX_QUOTE_CHARS // 2 else MAX_QUOTE_CHARS].rstrip(",;: ") + "…"


def best_sentences(text: str, keys: list[str], stem: Callable[[str], str]
                   ) -> dict[str, tuple[str, bool]]:
    """key -> (sentence, whether it defines the term), for the keys found.
    ``stem`` maps a lower-case word to its stem, as keys are made of."""
    best: dict[str, tuple[float, str, bool]] = {}
    # A sentence holds a key only if it holds the key's first word: a set
    # intersection finds the few keys to look for, in the keys' order.
    by_first: dict[str, list[tuple[int, str]]] = {}
    for rank, key in enumerate(keys):
        by_first.setdefault(key.split(" ")[0], []).append((rank, key))
    for sentence in _sentences(text):
        words = list(map(stem, _WORD.findall(sentence.lower())))
        firsts = by_first.keys() & set(words)
        if not firsts:
            continue
        stems = f" {' '.join(words)} "
        present = [key for _, key in sorted(rk for first in firsts for rk in by_first[first])
                   if " " not in key or f" {key} " in stems]
        if not present:
            continue
        size_fit = 0.0 if MIN_QUOTE_CHARS <= len(sentence) <= MAX_QUOTE_CHARS else -4.0
        opening = stems[1:]
        for article in _ARTICLES:
            if opening.startswith(article):
                opening = opening[len(article):]
                break
        for key in present:
            defines = opening.startswith(f"{key} ") and opening[len(key) + 1:].startswith(
                _DEFINING) and size_fit == 0.0
            score = (10.0 if defines else 0.0) + 2 * stems.count(f" {key} ") \
                + min(len(present) - 1, 3) + size_fit
            if key not in best or score > best[key][0]:
                best[key] = (score, sentence, defines)
    return {key: (_mark(_quote(sentence), key, stem), defines)
            for key, (_, sentence, defines) in best.items()}


def _mark(sentence: str, key: str, stem: Callable[[str], str]) -> str:
    """The sentence with the term's first occurrence in bold (keyword in
    context), found by stems, so "cookie" marks the "cookie" of a page
    titled "cookies". Words are stemmed as far as the first match only."""
    wanted = key.split(" ")
    words: list[re.Match[str]] = []
    stems: list[str] = []
    for word in _WORD.finditer(sentence):
        words.append(word)
        stems.append(stem(word.group(0).lower()))
        if stems[-len(wanted):] == wanted:
            start, end = words[-len(wanted)].start(), word.end()
            return f"{sentence[:start]}**{sentence[start:end]}**{sentence[end:]}"
    return sentence
