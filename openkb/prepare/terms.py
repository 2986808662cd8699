"""Key terms of a document, with no model and no network.

Candidates are words (four letters or more; "self-attention" is one word)
and two-word phrases of words that are not stop words. A candidate scores
its frequency; phrases weigh more than words (they name things), and an
occurrence in a heading or the title weighs more than one in running text.
A term must occur twice, or be in a heading or the title, to count; a word
must also occur twice outside the commonest phrase that holds it, so
"attention heads" does not bring "heads" along. Code blocks, URLs and link targets are
ignored. Only the first :data:`MAX_ANALYSED_CHARS` characters are read:
enough to characterise a document, and it bounds time and memory on a
50 MB file.
"""

from __future__ import annotations

import re
from collections import Counter

from openkb.prepare.stopwords import STOPWORDS

MAX_ANALYSED_CHARS = 2_000_000
PHRASE_WEIGHT = 2.5
HEADING_WEIGHT = 3.0
MIN_OCCURRENCES = 2

# A fence closes on a line of the same character, at least as long (CommonMark).
_FENCED = re.compile(r"^ {0,3}((?P<ch>[`~])(?P=ch){2,}).*?(?:^ {0,3}\1(?P=ch)*[ \t]*$|\Z)",
                     re.MULTILINE | re.DOTALL)
_URL = re.compile(r"https?://\S+|www\.\S+|\]\([^)]*\)")
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*)$", re.MULTILINE)
_WORD = re.compile(r"[^\W\d_]{2,}(?:-[^\W\d_]+)*")
_BREAK = re.compile(r"[.!?;:,()\[\]{}\"|\n]+")


def _clean(markdown: str) -> str:
    text = markdown[:MAX_ANALYSED_CHARS]
    text = _FENCED.sub(" ", text)
    return _URL.sub(" ", text)


def _count(text: str, counts: Counter[str]) -> None:
    """Count the words and phrases of ``text``; phrases never cross
    punctuation, so "heads. Attention" is not a phrase."""
    for clause in _BREAK.split(text.lower()):
        previous = None
        for word in _WORD.findall(clause):
            content = word not in STOPWORDS and len(word) >= 3
            if content and len(word) >= 4:
                counts[word] += 1
            if content and previous is not None:
                counts[f"{previous} {word}"] += 1
            previous = word if content else None


def _commonest_phrase_counts(occurrences: Counter[str]) -> dict[str, int]:
    """For each word, how often the commonest phrase holding it occurs."""
    best: dict[str, int] = {}
    for term, count in occurrences.items():
        if " " in term:
            for word in term.split(" "):
                best[word] = max(best.get(word, 0), count)
    return best


def key_terms(markdown: str, title: str, n: int) -> list[str]:
    text = _clean(markdown)
    occurrences: Counter[str] = Counter()
    _count(text, occurrences)
    emphasised: Counter[str] = Counter()
    for heading in _HEADING_LINE.findall(text):
        _count(heading, emphasised)
    _count(title, emphasised)
    in_phrases = _commonest_phrase_counts(occurrences)
    scores: list[tuple[float, str]] = []
    for term, count in occurrences.items():
        # Once in running text is chance; twice, or in a heading, is a theme.
        if count < MIN_OCCURRENCES and term not in emphasised:
            continue
        if count - in_phrases.get(term, 0) < MIN_OCCURRENCES and term not in emphasised:
            continue  # the word is there as part of a phrase, which is the term
        weight = PHRASE_WEIGHT if " " in term else 1.0
        scores.append((weight * (count + emphasised[term] * (HEADING_WEIGHT - 1)), term))
    scores.sort(key=lambda st: (-st[0], st[1]))
    return [term for _, term in scores[:n]]
