"""Content hashes of files: the identity of a document's bytes."""

from __future__ import annotations

import hashlib
import os

BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a regular file, read in blocks. Opened non-blocking and
    without following a final symlink: an input swapped for a FIFO or a
    link after the scan must neither hang nor lead elsewhere."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
