"""The stat cache: a file whose stat has not changed is not read again.

The registry keeps, per origin, the (device, inode, size, mtime, ctime)
seen when the file was last hashed, and the hash. A file whose stat
matches every field is taken to hold the same bytes, so add and sync skip
it (reason ``unchanged``) without opening it, provided a document holds
that content.

The one way a matching stat can lie is git's "racily clean" entry
(``Documentation/technical/racy-git.txt``): a file changed again within the
filesystem's timestamp granularity of the moment its stat was taken keeps
the same mtime (and maybe size). So an entry records when its stat was
taken (no later than that: the run's start), and an entry whose file's
mtime lies within :data:`RACY_NS` of that moment is not trusted: the file is
hashed again, and the new entry, recorded well after its mtime, is.
``RACY_NS`` is 2 s: the coarsest common granularity (FAT), and room for a
network filesystem's clock being a little ahead of ours.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time

from openkb.layout import KBLayout
from openkb.model import ScanEntry
from openkb.pending import has_pending_journals
from openkb.registry import FileStat, Registry

RACY_NS = 2_000_000_000
FLUSH_EVERY = 2000  # entries written per small transaction, as the run goes

log = logging.getLogger("openkb")


class StatCache:
    def __init__(self, registry: Registry, entries: list[ScanEntry], *, rehash: bool,
                 started_ns: int | None = None, layout: KBLayout | None = None) -> None:
        self.registry = registry
        self.layout = layout  # None: never written (a dry run)
        self.rehash = rehash
        self.started_ns = started_ns if started_ns is not None else time.time_ns()
        self.known: dict[str, FileStat] = {}
        if entries:
            # Over the folders, not the files: as exact, and a hundred times
            # fewer paths to split (the scan walks ~100 files per folder).
            folders = {os.path.dirname(entry.path) for entry in entries}
            self.known = registry.file_stats_under([os.path.commonpath(folders)])
        self._pending: list[tuple[str, FileStat]] = []
        self._forget: list[str] = []

    def fresh_sha(self, entry: ScanEntry) -> str | None:
        """The file's hash, if its stat says it has not changed since it was
        recorded (and the entry is not racily clean); else None."""
        if self.rehash or not entry.ino:
            return None
        cached = self.known.get(entry.path)
        if cached is None or cached[:5] != (entry.dev, entry.ino, entry.size, entry.mtime_ns,
                                            entry.ctime_ns):  # FileStat's first five
            return None
        if cached.recorded_ns - cached.mtime_ns < RACY_NS:
            return None
        return cached.sha256

    def note(self, entry: ScanEntry, sha: str, *, asked_again: bool = False) -> None:
        """``entry`` (stat taken at the scan) was hashed to ``sha``.

        ``asked_again``: this run will ask :meth:`fresh_sha` about the file
        again (a sync's move search hashes new files before the add part
        takes them), so the entry is kept for it. Otherwise it is dropped
        from memory: the add asks about each file once, and keeping what it
        learnt would grow the run by an entry per file; the registry has it
        once flushed."""
        if not entry.ino:
            return
        stat = FileStat(entry.dev, entry.ino, entry.size, entry.mtime_ns, entry.ctime_ns, sha,
                        self.started_ns)
        before = self.known.get(entry.path) if asked_again else self.known.pop(entry.path, None)
        if before != stat:
            if asked_again:
                self.known[entry.path] = stat
            self._pending.append((entry.path, stat))
            if len(self._pending) >= FLUSH_EVERY:
                self.flush()

    def forget(self, origin: str) -> None:
        if self.known.pop(origin, None) is not None:
            self._forget.append(origin)

    def flush(self) -> None:
        """Write what was noted. A cache write that fails costs a re-hash
        next time, never the run."""
        if not (self._pending or self._forget):
            return
        pending, forget = self._pending, self._forget
        self._pending, self._forget = [], []
        if not may_write_caches(self.layout):
            return
        try:
            self.registry.record_file_stats(pending, forget)
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not update the stat cache (%s); unchanged files will be "
                        "read again next time", exc)


def may_write_caches(layout: KBLayout | None) -> bool:
    """The stat cache and the failure ledger are written only into a KB with
    no journal pending: a journal that recovery refused (or one a crash
    left) means no command may change the KB until it is dealt with, and
    a cache is not worth an exception to that."""
    return layout is not None and not has_pending_journals(layout)
