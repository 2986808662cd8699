"""MinHash signatures of documents, to find near-copies (five versions of
one page) without comparing every pair.

A few lines of stdlib rather than a library (datasketch pulls in numpy and
scipy for this): shingles of :data:`SHINGLE_WORDS` words, each hashed once
with BLAKE2b (the same on every machine and in every process, unlike
``hash()``), then one-permutation MinHash: the hash picks one of
:data:`PERMUTATIONS` bins and each bin keeps its least value, one pass
over the shingles instead of one per permutation (an empty bin, in a
document of few shingles, borrows from the next full one). The share of
equal bins between two signatures estimates the Jaccard similarity of
their shingle sets. Signatures are cut into :data:`BANDS` bands; two
documents that share a band are candidates, which a commit finds by index
lookups, not by a scan.
"""

from __future__ import annotations

import hashlib
import re

SHINGLE_WORDS = 5
PERMUTATIONS = 64
BANDS = 16  # of 4 rows: pairs near 0.5 similar start to be candidates
# The opening of a long document characterises it: 3,000 words (a dozen
# pages) cover 75% of the RFCs' words, and hashing the rest took a
# quarter of the signature's time.
MAX_WORDS = 3_000
MAX_CHARS = 12 * MAX_WORDS  # and reading only that much bounds the time on a 50 MB one
NEAR_COPY = 0.7  # estimated Jaccard similarity at or above which two are near-copies
_EMPTY = 1 << 50  # above every bin value: 56-bit hashes, 6 bits pick the bin
_WORD = re.compile(r"\w+")


def signature(text: str) -> list[int]:
    """The document's signature; empty for a text of no words."""
    words = _WORD.findall(text[:MAX_CHARS].lower())[:MAX_WORDS]
    if not words:
        return []
    width = min(SHINGLE_WORDS, len(words))
    mins = [_EMPTY] * PERMUTATIONS
    for i in range(len(words) - width + 1):
        digest = hashlib.blake2b(" ".join(words[i:i + width]).encode(), digest_size=7).digest()
        value = int.from_bytes(digest, "big")
        slot, rest = value % PERMUTATIONS, value // PERMUTATIONS
        if rest < mins[slot]:
            mins[slot] = rest
    for slot in range(PERMUTATIONS):
        if mins[slot] == _EMPTY:
            # Borrow from the next full bin, marked with the distance, so
            # two documents agree on a borrowed bin only as they agree on
            # the bin it came from.
            for step in range(1, PERMUTATIONS):
                source = mins[(slot + step) % PERMUTATIONS]
                if source < _EMPTY:
                    mins[slot] = source + step * _EMPTY
                    break
    return mins


def similarity(one: list[int], other: list[int]) -> float:
    if not one or len(one) != len(other):
        return 0.0
    return sum(x == y for x, y in zip(one, other, strict=True)) / len(one)


def bands(sig: list[int]) -> list[int]:
    """One 63-bit key per band (band number folded in), for the index."""
    if not sig:
        return []
    rows = len(sig) // BANDS
    keys = []
    for band in range(BANDS):
        chunk = ",".join(map(str, sig[band * rows:(band + 1) * rows]))
        digest = hashlib.blake2b(f"{band}:{chunk}".encode(), digest_size=8).digest()
        keys.append(int.from_bytes(digest, "big") >> 1)
    return keys
