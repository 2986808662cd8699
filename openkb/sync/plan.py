"""What a sync will do, decided from one scan before anything changes.

A document *vanished* if its origin lies under a synced path (the path
itself, or below it) and the scan found no included file there: deleted,
renamed, now hidden or no longer a supported type. A vanished document
whose content (sha256) a new file holds was *moved*: it keeps its name and
pages and only its origin changes. The rest are *removed*.

A sync never guesses from what it could not see: a document under a
directory that could not be listed, or at a file that could not be read, is
neither vanished nor kept as a removal candidate (the scan reported the
failure). Both decisions are checked again under the lock before they
commit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from openkb.digest import sha256_file
from openkb.errors import UsageError
from openkb.model import ScanEntry
from openkb.registry import OriginRow, Registry
from openkb.scan import ScanResult
from openkb.statcache import StatCache

DEFAULT_MAX_DELETE = "50%"
_MAX_DELETE = re.compile(r"^(\d+(?:\.\d+)?)(%?)$")


class TooManyRemovals(UsageError):
    """A sync would remove more documents than the mass-delete guard allows:
    an unmounted drive or an emptied folder looks exactly like this."""

    argument = "max_delete"


@dataclass(frozen=True)
class MoveCandidate:
    name: str
    old_origin: str
    entry: ScanEntry  # where the content is now


@dataclass
class SyncPlan:
    roots: list[str]
    under: int  # documents whose origin lies under the roots
    removals: list[OriginRow] = field(default_factory=list)
    moves: list[MoveCandidate] = field(default_factory=list)
    entries: list[ScanEntry] = field(default_factory=list)  # the scan, for the add part


def sync_roots(paths: list[str]) -> list[str]:
    """The absolute paths a sync covers (each as given and resolved); a path
    that does not exist is a usage error, never "everything was deleted"."""
    roots: list[str] = []
    for path in paths:
        if not os.path.lexists(path) or not os.path.exists(path):
            raise UsageError(
                f"{path} does not exist; nothing was synced",
                hint="check the path (is its drive mounted?); to remove the documents that "
                     "came from it, use `openkb remove`", argument="paths")
        for root in (os.path.abspath(path), os.path.realpath(path)):
            if root not in roots:
                roots.append(root)
    return roots


def parse_max_delete(value: str | int) -> tuple[float, bool]:
    """``N`` or ``P%`` -> (number, is_percent)."""
    match = _MAX_DELETE.match(str(value).strip())
    if match is None or (match.group(2) and float(match.group(1)) > 100):
        raise UsageError(f"invalid max_delete {value!r}: give a count (10) or a percentage "
                         "of the documents under the paths (50%)", argument="max_delete")
    return float(match.group(1)), bool(match.group(2))


def check_removals(removals: int, under: int, max_delete: str | int) -> None:
    """Raise :class:`TooManyRemovals` if ``removals`` exceeds the guard."""
    limit, percent = parse_max_delete(max_delete)
    allowed = under * limit / 100 if percent else limit
    if removals > allowed:
        shown = f"{limit:g}%" if percent else f"{limit:g}"
        raise TooManyRemovals(
            f"this sync would remove {removals} of the {under} documents under the given "
            f"paths, more than max_delete allows ({shown}); nothing was changed")


def plan_sync(registry: Registry, scan: ScanResult, roots: list[str],
              stat_cache: StatCache) -> SyncPlan:
    known = registry.documents_under(roots)
    plan = SyncPlan(roots, len(known))
    present = {entry.path for entry in scan.entries}
    # A file reached twice (overlapping paths, hard links) is scanned once,
    # under its first name: the other name still exists.
    present.update(os.path.abspath(s.display) for s in scan.skipped
                   if s.reason == "duplicate-in-run")
    unseen = [f.display for f in scan.failed]  # could not be read or listed
    vanished = [row for row in known
                if row.origin not in present and not _below_any(row.origin, unseen)]
    moved: dict[int, MoveCandidate] = {}
    if vanished:
        moved = _find_moves(registry, scan.entries, vanished, stat_cache)
    taken = {m.name for m in moved.values()}
    plan.moves = sorted(moved.values(), key=lambda m: m.entry.seq)
    plan.removals = [row for row in vanished if row.name not in taken]
    plan.entries = scan.entries
    return plan


def without(entries: list[ScanEntry], seqs: set[int]) -> list[ScanEntry]:
    """``entries`` less those at scan positions ``seqs``, numbered again
    from 0 (the add pipeline counts on contiguous positions)."""
    if not seqs:
        return entries
    rest = [entry for entry in entries if entry.seq not in seqs]
    return [replace(entry, seq=n) for n, entry in enumerate(rest)]


def _find_moves(registry: Registry, entries: list[ScanEntry], vanished: list[OriginRow],
                stat_cache: StatCache) -> dict[int, MoveCandidate]:
    """New files (no document has their path as origin) holding a vanished
    document's content, by scan position: the first one in scan order wins."""
    by_sha = {row.sha256: row for row in vanished}
    moves: dict[int, MoveCandidate] = {}
    for entry in entries:
        if not by_sha:
            break
        if registry.names_by_origin(entry.path):
            continue
        try:
            sha = stat_cache.fresh_sha(entry) or sha256_file(entry.path)
        except OSError:
            continue  # the add part reports it
        stat_cache.note(entry, sha, asked_again=True)  # the add part asks again
        row = by_sha.pop(sha, None)
        if row is not None:
            moves[entry.seq] = MoveCandidate(row.name, row.origin, entry)
    return moves


def _below_any(origin: str, paths: list[str]) -> bool:
    for path in paths:
        full = os.path.abspath(path)
        if origin == full or origin.startswith(full.rstrip(os.sep) + os.sep):
            return True
    return False
