"""Candidate key terms of a document, with no model and no network.

Candidates are words (four letters or more; "self-attention" is one word)
and two-word phrases of words that are not stop words. Inflections are one
candidate: "accounts" and "account" share the key ``account`` (Snowball's
English stemmer, which Sphinx's search uses too), shown in the form the
document uses most. A candidate scores its frequency; phrases weigh more
than words (they name things), and an occurrence in a heading or the title
weighs more than one in running text. A term must occur twice, or be in a
heading or the title, to count; a word must also occur twice outside the
commonest phrase that holds it, so "attention heads" does not bring "heads"
along. A word mostly used as a verb ("it accepts", "to configure") is not a
term a reader looks up. Code blocks, URLs and link targets are ignored.

This is the document's view alone: commit weighs the candidates by how
rare each is in the KB (:mod:`openkb.keyterms`). Each candidate carries the
sentence where it matters most, which concept pages quote. Only the first
:data:`MAX_ANALYSED_CHARS` characters are read: enough to characterise a
document, and it bounds time and memory on a 50 MB file.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import snowballstemmer

from openkb.model import TermCandidate
from openkb.prepare.sentences import best_sentences
from openkb.prepare.stopwords import STOPWORDS

MAX_ANALYSED_CHARS = 2_000_000
PHRASE_WEIGHT = 2.5
HEADING_WEIGHT = 3.0
MIN_OCCURRENCES = 2
MAX_KEY_CHARS = 100
# Words that, just before a word, make it a verb: "to accept", "it accepts".
_VERB_CUES = frozenset("to will must should shall can cannot may might would could it they we "
                       "you he she also then which who not is are was were be been by "
                       "when while without".split())

# A fence closes on a line of the same character, at least as long (CommonMark).
_FENCED = re.compile(r"^ {0,3}((?P<ch>[`~])(?P=ch){2,}).*?(?:^ {0,3}\1(?P=ch)*[ \t]*$|\Z)",
                     re.MULTILINE | re.DOTALL)
_URL = re.compile(r"https?://\S+|www\.\S+|\]\([^)]*\)")
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*)$", re.MULTILINE)
_WORD = re.compile(r"[^\W\d_]{2,}(?:-[^\W\d_]+)*")
_BREAK = r"[.!?;:,()\[\]{}\"|\n]+"
# A word, or a run of punctuation (found as ""): one pass over the text.
_TOKEN = re.compile(rf"({_WORD.pattern})|{_BREAK}")
_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _STEMMER.stemWord(word)


@lru_cache(maxsize=65536)
def _word_key(word: str) -> tuple[str, str]:
    """(surface, key) of one lower-case word of the text."""
    surface = word.replace("-", " ")
    return surface, term_key(surface)


def term_key(surface: str) -> str:
    """The key of a term as written ("Access rights" -> "access right"):
    what two inflections of one term share."""
    return " ".join(stem(w) for w in re.split(r"[\W_]+", surface.lower()) if w)


def _clean(markdown: str) -> str:
    text = markdown[:MAX_ANALYSED_CHARS]
    text = _FENCED.sub(" ", text)
    return _URL.sub(" ", text)


class _Tally:
    """Occurrences per key, the surface forms behind each, and how often a
    word stands where a verb would."""

    def __init__(self) -> None:
        # One (key, surface) per occurrence, counted in C once all text is
        # read: a Counter bumped per word was a third of the analysis.
        self._seen: list[tuple[str, str]] = []
        self._verb_keys: list[str] = []
        self.counts: Counter[str] = Counter()
        self.surfaces: dict[str, dict[str, int]] = {}  # key -> surface -> count
        self.verb_like: Counter[str] = Counter()

    def count(self, text: str) -> None:
        """Phrases never cross punctuation, so "heads. Attention" is not one."""
        seen = self._seen.append
        verb_keys = self._verb_keys.append
        previous: tuple[str, str] | None = None
        before = ""
        for word in _TOKEN.findall(text.lower()):
            if not word:  # punctuation: a new clause
                previous = None
                before = ""
                continue
            if word not in STOPWORDS and len(word) >= 3:
                surface, key = _word_key(word)
                if len(word) >= 4:
                    seen((key, surface))
                    if before in _VERB_CUES:
                        verb_keys(key)
                if previous is not None:
                    seen((f"{previous[0]} {key}", f"{previous[1]} {surface}"))
                previous = (key, surface)
            else:
                previous = None
            before = word

    def settle(self) -> _Tally:
        """Count what :meth:`count` saw; returns self."""
        counts: dict[str, int] = {}
        surfaces: dict[str, dict[str, int]] = {}
        for (key, surface), n in Counter(self._seen).items():
            counts[key] = counts.get(key, 0) + n
            forms = surfaces.get(key)
            if forms is None:
                surfaces[key] = {surface: n}
            else:
                forms[surface] = n
        self.counts = Counter(counts)
        self.surfaces = surfaces
        self.verb_like = Counter(self._verb_keys)
        return self


def _commonest_phrase_counts(counts: Counter[str]) -> dict[str, int]:
    """For each word, how often the commonest phrase holding it occurs."""
    best: dict[str, int] = {}
    for term, count in counts.items():
        if " " in term:
            for word in term.split(" "):
                best[word] = max(best.get(word, 0), count)
    return best


def _participle(surfaces: dict[str, int]) -> bool:
    """Mostly written as a past participle ("closed", "added"; "speed" is not)."""
    ed = sum(n for s, n in surfaces.items() if s.endswith("ed") and not s.endswith("eed"))
    return 2 * ed > sum(surfaces.values())


def _scored(text: str, title: str) -> tuple[list[tuple[float, str]], _Tally]:
    tally = _Tally()
    tally.count(text)
    tally.settle()
    emphasised = _Tally()
    for heading in _HEADING_LINE.findall(text):
        emphasised.count(heading)
    emphasised.count(title)
    emphasised.settle()
    in_phrases = _commonest_phrase_counts(tally.counts)
    scores: list[tuple[float, str]] = []
    for key, count in tally.counts.items():
        if len(key) > MAX_KEY_CHARS:
            continue  # a key names a page file: no 10,000-letter "word"
        heading = emphasised.counts[key]
        # Once in running text is chance; twice, or in a heading, is a theme.
        if count < MIN_OCCURRENCES and not heading:
            continue
        if count - in_phrases.get(key, 0) < MIN_OCCURRENCES and not heading:
            continue  # the word is there as part of a phrase, which is the term
        phrase = " " in key
        if not phrase and not heading and (2 * tally.verb_like[key] >= count
                                           or _participle(tally.surfaces[key])):
            continue  # "accepts", "configure", "closed": a verb, not a thing to look up
        weight = PHRASE_WEIGHT if phrase else 1.0
        scores.append((weight * (count + heading * (HEADING_WEIGHT - 1)), key))
    scores.sort(key=lambda st: (-st[0], st[1]))
    return scores, tally


def candidate_terms(markdown: str, title: str, n: int) -> list[TermCandidate]:
    """The ``n`` best-scoring terms of the document alone, best first."""
    text = _clean(markdown)
    scores, tally = _scored(text, title)
    chosen = scores[:n]
    surfaces = {key: min(tally.surfaces[key].items(), key=lambda sc: (-sc[1], sc[0]))[0]
                for _, key in chosen}
    contexts = best_sentences(text, [key for _, key in chosen], stem)
    return [TermCandidate(key=key, surface=surfaces[key], score=round(score, 3),
                          context=contexts.get(key, ("", False))[0],
                          defines=contexts.get(key, ("", False))[1])
            for score, key in chosen]


def key_terms(markdown: str, title: str, n: int) -> list[str]:
    """The ``n`` best terms of the document alone, as it words them."""
    return [c.surface for c in candidate_terms(markdown, title, n)]
