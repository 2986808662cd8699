"""MinHash signatures of documents, to find near-copies (five versions of
one page) without comparing every pair.

A few lines of stdlib rather than a library (datasketch pulls in numpy and
scipy for this): shingles of :data:`SHINGLE_WORDS` words, each hashed once
with BLAKE2b, then :data:`PERMUTATIONS` universal hashes ``(a*h + b) mod p``
with constants fixed by the code, so a signature is the same on every
machine and in every process. The share of equal positions between two
signatures estimates the Jaccard similarity of their shingle sets.
Signatures are cut into :data:`BANDS` bands; two documents that share a
band are candidates, which a commit finds by index lookups, not by a scan.
"""

from __future__ import annotations

import hashlib
import re

SHINGLE_WORDS = 5
PERMUTATIONS = 64
BANDS = 16  # of 4 rows: pairs near 0.5 similar start to be candidates
MAX_WORDS = 20_000  # the opening of a long document characterises it
NEAR_COPY = 0.7  # estimated Jaccard similarity at or above which two are near-copies
_PRIME = (1 << 61) - 1
_WORD = re.compile(r"\w+")


def _constants() -> list[tuple[int, int]]:
    out = []
    for i in range(PERMUTATIONS):
        digest = hashlib.blake2b(f"openkb-minhash-{i}".encode(), digest_size=16).digest()
        out.append((int.from_bytes(digest[:8], "big") % (_PRIME - 1) + 1,
                    int.from_bytes(digest[8:], "big") % _PRIME))
    return out


_AB = _constants()


def signature(text: str) -> list[int]:
    """The document's signature; empty for a text of no words."""
    words = _WORD.findall(text.lower())[:MAX_WORDS]
    if not words:
        return []
    width = min(SHINGLE_WORDS, len(words))
    hashes = {int.from_bytes(hashlib.blake2b(" ".join(words[i:i + width]).encode(),
                                             digest_size=8).digest(), "big")
              for i in range(len(words) - width + 1)}
    return [min((a * h + b) % _PRIME for h in hashes) for a, b in _AB]


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
