"""Running out of disk space: the reserve that lets a removal free some, and
telling a full disk apart from one file's failure.

**The reserve.** ``.openkb/reserve`` is a preallocated file (blocks
allocated, no data written) of ``disk_reserve_mb`` (default
:data:`DEFAULT_RESERVE_MB`). It exists so that `openkb remove` and the
removals of `openkb sync` can run on a full disk, and free space: a removal
writes a little before its commit point (its journal, the catalog pages it
rewrites, a line in log.md, SQLite's WAL frames for the rows and index
entries it deletes), and without room for that it fails and frees nothing.
Before a removal commits, if the free space is below the reserve's size,
the reserve is deleted (:meth:`Reserve.release_if_short`), right after the
lock is taken and before the registry is opened (SQLite needs room for its
WAL to open it for writing). After the removals it is made again as soon as
its size is free, so the adds of a sync never eat it; whenever a writer
takes the lock, a missing reserve is made if twice its size is free
(:meth:`Reserve.ensure`), so it never takes the last free space from
someone else. Adds never release it: a full disk stops them
(:class:`DiskFull`).

Why 8 MiB: removing the largest document (170 KB of text) from a KB of the
653 RFCs needs 512 KiB free (measured on a tmpfs, growing the free space by
64 KiB until `remove` succeeded); 8 MiB is sixteen times that, for larger
documents and catalogs, and nothing next to a disk that holds a KB.

**A full disk** (ENOSPC, EDQUOT, SQLite's "database or disk is full") is
not a failure of the file being added: every file after it would fail the
same way. :func:`is_disk_full` recognises it, so the run stops at the
first one (:mod:`openkb.ingest.run`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from dataclasses import dataclass

from openkb import fsio
from openkb.errors import OpenKBError
from openkb.layout import KBLayout

DEFAULT_RESERVE_MB = 8
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_SQLITE_FULL = 13  # SQLITE_FULL
# How a full disk reads in a failure's reason: a worker (perhaps another
# process) turned the OSError into text (openkb.prepare.worker).
_FULL_TEXTS = (*(os.strerror(code) for code in _FULL_ERRNOS), "database or disk is full")

log = logging.getLogger("openkb")


class DiskFull(OpenKBError):
    """The disk the KB is on filled up: the run stops; what it committed stays."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Is ``exc``, or an error it was raised from, a full disk?"""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
                getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
                or "database or disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def is_disk_full_reason(reason: str) -> bool:
    """Does a file's failure reason say the disk was full?"""
    return any(text in reason for text in _FULL_TEXTS)


def full_disk_cause(error: BaseException | str) -> str:
    """How the system said the disk is full ("No space left on device")."""
    text = str(error)
    while isinstance(error, BaseException):
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return error.strerror or os.strerror(error.errno)
        text = str(error)
        error = error.__cause__ or error.__context__
    return next((t for t in _FULL_TEXTS if t in text), text)


def free_bytes(path: os.PathLike[str] | str) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class Reserve:
    def __init__(self, layout: KBLayout, size_mb: int = DEFAULT_RESERVE_MB) -> None:
        self.path = layout.reserve_path
        self.size = size_mb * 1048576

    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def ensure(self, headroom: int = 2) -> bool:
        """Create the reserve if it is missing and ``headroom`` times its
        size is free (2: it never takes the last free space from anyone; 1:
        after a removal that released it, which takes it back before adding
        anything); True if it exists afterwards. Never an error: a reserve
        that cannot be made is a reserve that is not there."""
        if self.size == 0 or self.exists():
            return self.size > 0
        if free_bytes(self.path.parent) < headroom * self.size:
            return False
        tmp = fsio.tmp_path_for(self.path)  # swept as a leftover if we die here
        try:
            fsio.allocate(tmp, self.size)
            fsio.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            log.debug("could not create the disk reserve (%s)", exc)
            return False
        return True

    def short(self) -> bool:
        """Is the reserve there, with less than its size free beside it?"""
        return self.exists() and free_bytes(self.path.parent) < self.size

    def release_if_short(self) -> bool:
        """Delete the reserve if less than its size is free (a removal is
        about to need the room); True if it did."""
        if not self.short():
            return False
        try:
            fsio.unlink(self.path)
        except OSError as exc:
            log.warning("could not release the disk reserve (%s)", exc)
            return False
        log.warning("the disk is full: released openkb's %d MiB reserve so the removal "
                    "can run", self.size // 1048576)
        return True


@dataclass
class OutOfSpace:
    """Where a run stood when the disk filled up."""

    committed: int  # documents this run committed (added or updated)
    left_files: int  # files it did not get to (or whose commit the disk refused)
    left_bytes: int  # their size
    needed_bytes: int  # about how much free space they need
    cause: str = ""  # the error that said so

    @property
    def message(self) -> str:
        cause = f" ({self.cause})" if self.cause else ""
        return (f"the disk is full{cause}: {self.committed} document(s) committed before it filled "
                f"up; the {self.left_files} file(s) left ({_mib(self.left_bytes)}) need about "
                f"{_mib(self.needed_bytes)} of free space; free space and run the same "
                "command again")


# Bytes of disk a committed byte of input takes when the run cannot tell:
# the original in raw/, its text in wiki/sources/, its chunks in the index.
DEFAULT_GROWTH = 3.0


def out_of_space(committed: int, committed_bytes: int, used_bytes: int,
                 left_sizes: list[int], cause: str) -> OutOfSpace:
    """``used_bytes``: free space this run took (before and after, staging
    discarded), which, against ``committed_bytes``, says how much a byte of
    input grows into in this KB."""
    growth = used_bytes / committed_bytes if committed_bytes and used_bytes > 0 else 0.0
    growth = max(growth, 1.0) if growth else DEFAULT_GROWTH
    left = sum(left_sizes)
    return OutOfSpace(committed, len(left_sizes), left, int(left * growth), cause)


def _mib(size: float) -> str:
    return f"{size / 1048576:.1f} MiB"
