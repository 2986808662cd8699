"""A hash of a KB's logical content, to compare two KBs (or one before and after).

Two KBs built from the same inputs hash the same whatever the ``--jobs``,
and a KB hashes the same before and after a transaction that failed and was
rolled back. So the hash covers every file of the user-visible tree and the
registry's rows, and leaves out what legitimately differs between such runs:
times and transaction ids (in log.md and the registry), and SQLite's
physical layout.
"""

from __future__ import annotations

import hashlib
import os

from openkb import pages
from openkb.layout import KBLayout
from openkb.registry import Registry

_TREES = ("raw", "wiki", "attic")

def _normalised_log(data: bytes) -> bytes:
    lines = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        parsed = pages.parse_log_line(line)
        lines.append(f"{parsed[1]} {parsed[2]}" if parsed else line)
    return "\n".join(lines).encode("utf-8")


def tree_hash(layout: KBLayout, registry: Registry) -> str:
    digest = hashlib.sha256()
    for tree in _TREES:
        top = layout.root / tree
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = layout.rel(path)  # type: ignore[arg-type]
                with open(path, "rb") as handle:
                    data = handle.read()
                if rel == layout.LOG_REL:
                    data = _normalised_log(data)
                digest.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    for row in registry.logical_rows():
        digest.update(repr(row).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
