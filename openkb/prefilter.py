"""Hash prefilter and name reservation, in scan order, before any worker runs.

Each scanned file is hashed once here. Content already in the registry, or
seen earlier in this run, is skipped without conversion. Every other file
gets its document name now, in scan order, so ``a/notes.md`` and
``b/notes.md`` are named the same way whatever ``--jobs`` is. A file whose
path is the origin of a document already in the KB, with new content,
becomes an update of that document and keeps its name.

This runs without the lock: commit re-checks both decisions under it, since
another process may have committed in between.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from openkb import names
from openkb.digest import sha256_file
from openkb.layout import KBLayout
from openkb.model import FileFailure, PrepareTask, ScanEntry, Skipped
from openkb.prepare.sniff import detect_kind_by_name
from openkb.progress import Progress
from openkb.registry import Registry
from openkb.statcache import StatCache

# The hash of a file is timed and reported on its ``prefilter`` event rather
# than as a span of its own (two events fewer per file: most of what the
# JSONL cost). A file this big takes long enough to hash that the live view
# says so while it happens.
HASHING_NOTE_BYTES = 16 * 1048576


class NameReservations:
    """Names handed out in this run, checked against the registry and the
    disk; and the contents of the files they went to, until committed."""

    def __init__(self, layout: KBLayout, registry: Registry) -> None:
        self.layout = layout
        self.registry = registry
        self.reserved: set[str] = set()
        # Digest -> the file prefiltered with that content and not yet
        # committed, for the ``duplicate-in-run`` skip (as bytes, and the
        # display string the scan entry holds anyway).
        self.contents: dict[bytes, str] = {}

    def release(self, name: str, sha256: str) -> None:
        """Once a document is committed the registry holds its name and its
        content (and the prefilter asks the registry first): keeping them
        here too would grow the run's memory with each file."""
        self.reserved.discard(name)
        self.forget_content(sha256)

    def forget_content(self, sha256: str) -> None:
        self.contents.pop(bytes.fromhex(sha256), None)

    def taken(self, name: str) -> bool:
        if name in self.reserved or self.registry.name_taken(name):
            return True
        # A leftover file (say, from a manual copy) must not be overwritten.
        return (self.layout.root / self.layout.source_rel(name)).exists() or (
            self.layout.root / self.layout.summary_rel(name)
        ).exists()

    def reserve(self, display: str) -> str:
        name = names.unique_name(names.slugify(Path(display).stem), self.taken)
        self.reserved.add(name)
        return name

    def reserve_again(self, held: str, display: str) -> str:
        """Give up ``held`` and reserve the name ``display`` gets now."""
        self.reserved.discard(held)
        return self.reserve(display)


def prefilter(
    entries: list[ScanEntry],
    reservations: NameReservations,
    registry: Registry,
    staging_root: Path,
    max_file_bytes: int,
    progress: Progress,
    stat_cache: StatCache | None = None,
) -> Iterator[tuple[ScanEntry, PrepareTask | Skipped | FileFailure, float]]:
    """For each entry, in order: a task to prepare, a skip, or a failure, and
    the milliseconds spent hashing it. A file the stat cache vouches for is
    not opened: skipped as ``unchanged`` if a document holds its content."""
    seen = reservations.contents  # until committed: see NameReservations.release
    for entry in entries:
        if entry.size > max_file_bytes:
            yield entry, FileFailure(entry.seq, entry.display, (
                f"too large: {entry.size / 1048576:.1f} MiB "
                f"(limit max_file_mb = {max_file_bytes // 1048576})")), 0.0
            continue
        cached = stat_cache.fresh_sha(entry) if stat_cache is not None else None
        if cached is not None:
            holder = registry.name_by_sha(cached)
            if holder is not None:
                yield entry, Skipped(entry.display, "unchanged", holder), 0.0
                continue
        if entry.size >= HASHING_NOTE_BYTES:
            progress.emit("hashing", "point", "prefilter", file=entry.display, bytes=entry.size)
        start = time.perf_counter()
        try:
            sha = cached or sha256_file(entry.path)
        except FileNotFoundError:
            yield entry, FileFailure(entry.seq, entry.display, "vanished after it was scanned"), 0.0
            continue
        except OSError as exc:
            yield entry, FileFailure(entry.seq, entry.display, f"cannot read: {exc.strerror}"), 0.0
            continue
        hash_ms = round((time.perf_counter() - start) * 1000, 3)
        progress.add_busy("prefilter", hash_ms)
        if stat_cache is not None:
            stat_cache.note(entry, sha)
        holder = registry.name_by_sha(sha)
        if holder is not None:
            yield entry, Skipped(entry.display, "duplicate", holder), hash_ms
            continue
        digest = bytes.fromhex(sha)
        if digest in seen:
            yield entry, Skipped(entry.display, "duplicate-in-run", seen[digest]), hash_ms
            continue
        seen[digest] = entry.display
        kind, ext = detect_kind_by_name(entry.path)
        updating = next((n for n in registry.names_by_origin(entry.path)
                         if n not in reservations.reserved), None)
        if updating is not None:
            name = updating
            reservations.reserved.add(name)
        else:
            name = reservations.reserve(entry.display)
        yield entry, PrepareTask(
            seq=entry.seq, path=entry.path, display=entry.display, sha256=sha, size=entry.size,
            name=name, kind=kind, ext=ext, staging_prefix=str(staging_root / str(entry.seq)),
            replaces=updating,
        ), hash_ms
