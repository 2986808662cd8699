"""What a crash can leave in a KB, found without loading recovery.

Every command asks, when it opens a KB, whether a journal is pending or a
leftover lies about; almost always the answer is no, and a read-only command
must not pay for the recovery machinery (the commit actions, the journal
parser) to hear it. :mod:`openkb.recovery` acts on what this finds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from openkb import fsio
from openkb.layout import KBLayout
from openkb.lock import process_started, run_owner_alive

TXID = re.compile(r"^[0-9a-f]{12,40}$")


@dataclass
class RecoveryReport:
    rolled_back: list[str] = field(default_factory=list)  # txids
    rolled_forward: list[str] = field(default_factory=list)
    # unreadable journals of transactions that never committed
    discarded: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)  # KB-relative paths removed

    @property
    def anything(self) -> bool:
        return bool(self.rolled_back or self.rolled_forward or self.discarded or self.swept)


def txid_of(path: Path) -> str | None:
    """The txid a journal file is named after, or None if the name is not
    one openkb gives a journal."""
    stem = path.name[:-len(".json")] if path.name.endswith(".json") else ""
    return stem if TXID.match(stem) else None


def pending_journal_paths(layout: KBLayout) -> list[Path]:
    """Journal files in creation order (txids start with a hex timestamp).
    Other files in the journal dir are strays, which `verify` reports."""
    paths = [layout.journal_dir / n for n in _entries(layout.journal_dir)]
    return [p for p in paths if txid_of(p) is not None and not p.is_dir()]


def has_pending_journals(layout: KBLayout) -> bool:
    return bool(pending_journal_paths(layout))


def leftover_paths(layout: KBLayout) -> list[Path]:
    """What no journal accounts for: backup dirs without a journal, temp
    files in private dirs, staging and run records of dead processes. Only
    meaningful with no journal pending (a pending journal owns its backups)."""
    found = []
    for directory in (layout.journal_dir, layout.meta_dir, layout.runs_dir,
                      layout.llm_cache_dir):
        for entry in _entries(directory):
            path = directory / entry
            orphan_backup = directory == layout.journal_dir and path.is_dir()
            temp = fsio.is_tmp_name(entry) and (directory != layout.llm_cache_dir
                                                or not _writer_alive(path))
            stale_run = directory == layout.runs_dir and not run_owner_alive(entry)
            if orphan_backup or temp or stale_run:
                found.append(path)
    found.extend(layout.staging_dir / entry for entry in _entries(layout.staging_dir)
                 if not run_owner_alive(entry))
    return found


def _writer_alive(tmp: Path) -> bool:
    """Is the process that is writing this temp file still running? The LLM
    stage writes the reply cache without the KB lock, so a lock holder's
    sweep must not take a reply from under a live writer (itself included)."""
    try:
        pid = int(tmp.name.rpartition(fsio.TMP_MARK)[2].split("-")[0])
        # Started before the file was made: the writer, not a reuse of its pid.
        return process_started(pid) <= tmp.lstat().st_mtime + 1.0
    except (ValueError, OSError, LookupError):
        return False


def _entries(directory) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
