"""The single I/O layer of the commit path.

Every byte the commit path writes, renames or deletes in a KB goes through
these functions, which follow one rule: a change is durable only once its
data *and* its directory entry have been fsynced. Concretely:

- a new or rewritten file is written to a temp file in the same directory,
  fsynced, ``os.replace``-d into place, and the directory is fsynced;
- a rename or unlink is followed by an fsync of each directory it changed;
- a failed fsync raises; it is never retried and trusted (the page cache may
  already have dropped the dirty pages, so a retry can "succeed" on lost data).

Because everything funnels through here, tests can inject faults and crashes:

- ``OPENKB_FAULT=<op>:<errno>[:n][,...]`` makes the n-th call (default 1st) of
  ``op`` fail with that errno. ``op`` is one of :data:`FAULT_OPS` or ``*``.
- ``OPENKB_POWERLOSS=1`` (or ``=torn``) records what has been fsynced; when
  a crash point fires, :func:`simulate_power_loss_if_enabled` first applies
  a power cut to every touched path (``1``: each goes back to its last
  durable state; ``torn``: entry changes survive but unsynced data is cut,
  see :mod:`openkb.powerloss`), then the process is SIGKILLed. That models
  a power cut, which a plain kill -9 does not: after kill -9 the kernel
  still writes back the page cache.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

FAULT_OPS = (
    "open",
    "write",
    "fsync",
    "replace",
    "link",
    "unlink",
    "mkdir",
    "truncate",
    "rmtree",
)

TMP_MARK = ".openkb-tmp-"

_tmp_counter = itertools.count()


@dataclass
class FaultRule:
    """Fail the ``nth`` call of ``op`` with ``errno``; ``hits`` counts calls."""

    op: str
    errno: int
    nth: int
    hits: int = 0

    @property
    def fired(self) -> bool:
        return self.hits >= self.nth


class _FaultPlan:
    def __init__(self, spec: str) -> None:
        self.rules: list[FaultRule] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            fields = part.split(":")
            if len(fields) not in (2, 3) or (fields[0] not in FAULT_OPS and fields[0] != "*"):
                raise ValueError(
                    f"OPENKB_FAULT={spec!r}: expected <op>:<errno>[:n] with op in "
                    f"{', '.join(FAULT_OPS)} or *"
                )
            code = getattr(errno_mod, fields[1], None) if not fields[1].isdigit() else int(
                fields[1]
            )
            if not isinstance(code, int):
                raise ValueError(f"OPENKB_FAULT={spec!r}: unknown errno {fields[1]!r}")
            nth = int(fields[2]) if len(fields) == 3 else 1
            self.rules.append(FaultRule(fields[0], code, nth))

    def check(self, op: str, path: object) -> None:
        for rule in self.rules:
            if rule.op in (op, "*"):
                rule.hits += 1
                if rule.hits == rule.nth:
                    raise OSError(rule.errno, f"{os.strerror(rule.errno)} (injected at {op})",
                                  str(path))


_faults: _FaultPlan | None = None
_tracker = None  # openkb.powerloss.DurabilityTracker when OPENKB_POWERLOSS=1
_configured = False


def configure_from_env() -> None:
    """(Re)read OPENKB_FAULT and OPENKB_POWERLOSS. Called lazily and by tests."""
    global _faults, _tracker, _configured
    spec = os.environ.get("OPENKB_FAULT", "").strip()
    _faults = _FaultPlan(spec) if spec else None
    mode = os.environ.get("OPENKB_POWERLOSS", "")
    if mode not in ("", "0"):
        from openkb.powerloss import DurabilityTracker

        _tracker = DurabilityTracker("drop" if mode == "1" else mode)
    else:
        _tracker = None
    _configured = True


def _hook(op: str, path: object) -> None:
    if not _configured:
        configure_from_env()
    if _faults is not None:
        _faults.check(op, path)


def faults_fired() -> bool:
    """Has every configured fault fired? (For tests enumerating faults.)"""
    return _faults is not None and all(rule.fired for rule in _faults.rules)


def simulate_power_loss_if_enabled() -> None:
    if _tracker is not None:
        _tracker.drop_unsynced()


def tmp_path_for(path: Path) -> Path:
    """A temp name beside ``path``; recovery finds leftovers by :data:`TMP_MARK`."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{next(_tmp_counter)}")


def is_tmp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


# -- primitives ------------------------------------------------------------


def fsync_fd(fd: int, path: object) -> None:
    _hook("fsync", path)
    os.fsync(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fsync_fd(fd, path)
    finally:
        os.close(fd)
    if _tracker is not None:
        _tracker.file_synced(path)


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (creates, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync_fd(fd, path)
    finally:
        os.close(fd)
    if _tracker is not None:
        _tracker.dir_synced(path)


def _write_all(fd: int, data: bytes, path: object) -> None:
    view = memoryview(data)
    while view:
        _hook("write", path)
        written = os.write(fd, view)
        view = view[written:]


def write_new_file(path: Path, data: bytes, *, mode: int = 0o666, sync: bool = True) -> None:
    """Create ``path`` (which must not exist) with ``data``, fsynced; no dir fsync.

    For private paths (staging) whose directory is fsynced by the caller, or
    whose loss is harmless. ``sync=False`` skips the fsync: after a power
    cut the file may exist and be empty or short.
    """
    _hook("open", path)
    if _tracker is not None:
        _tracker.before_entry_change(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    if _tracker is not None:
        _tracker.file_created(path)
    try:
        _write_all(fd, data, path)
        if sync:
            fsync_fd(fd, path)
    finally:
        os.close(fd)
    if _tracker is not None and sync:
        _tracker.file_synced(path)


def allocate(path: Path, size: int) -> None:
    """``path`` (new) with ``size`` bytes of blocks allocated, fsynced; no dir fsync."""
    _hook("open", path)
    if _tracker is not None:
        _tracker.before_entry_change(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    if _tracker is not None:
        _tracker.file_created(path)
    try:
        _hook("write", path)
        os.posix_fallocate(fd, 0, size)
        fsync_fd(fd, path)
    finally:
        os.close(fd)
    if _tracker is not None:
        _tracker.file_synced(path)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either old or new, whole.

    ``durable=False`` skips the fsyncs, for advisory records that nothing
    trusts after a crash (the lock holder record, run records). A kill
    still leaves old or new, whole; a power cut may leave old, new, or an
    empty or short new file, since the rename can reach the disk before the
    data does. Never use it for a file recovery reads.
    """
    tmp = tmp_path_for(path)
    try:
        write_new_file(tmp, data, sync=durable)
        replace(tmp, path, sync=durable)
    except BaseException:
        _discard(tmp)
        raise


def fsync_dirs(dirs: set[Path] | list[Path]) -> None:
    for directory in sorted(set(dirs)):
        fsync_dir(directory)


def replace(src: Path, dst: Path, *, sync: bool = True) -> None:
    """``os.replace`` then fsync the directories it changed: a rename is not
    durable until its directory is. The destination's directory goes first,
    so a power cut can leave the file under both names, never under neither.

    ``sync=False`` leaves the directory fsyncs to the caller, who batches
    them (:func:`fsync_dirs`) in the same order: destinations first.
    """
    _hook("replace", dst)
    if _tracker is not None:
        _tracker.before_entry_change(src)
        _tracker.before_entry_change(dst)
    os.replace(src, dst)
    if sync:
        fsync_dir(dst.parent)
        if src.parent != dst.parent:
            fsync_dir(src.parent)


def link(src: Path, dst: Path, *, sync: bool = True) -> None:
    """Hard-link ``dst`` to ``src``: an O(1) before-image that keeps the old
    inode alive when ``src`` is later replaced."""
    _hook("link", dst)
    if _tracker is not None:
        _tracker.before_entry_change(dst)
    os.link(src, dst)
    if sync:
        fsync_dir(dst.parent)


def snapshot_file(src: Path, dst: Path, *, sync: bool = True) -> None:
    """Before-image of ``src`` at ``dst``: a hard link, or on filesystems
    without them a copy, fsynced (unlike shutil.copy). Durable once ``dst``'s
    directory is fsynced, which ``sync=False`` leaves to the caller."""
    try:
        link(src, dst, sync=sync)
    except OSError as exc:
        if exc.errno not in (errno_mod.EPERM, errno_mod.EXDEV, errno_mod.EMLINK, errno_mod.ENOTSUP):
            raise
        tmp = tmp_path_for(dst)
        write_new_file(tmp, src.read_bytes())
        replace(tmp, dst, sync=sync)


def unlink(path: Path, *, missing_ok: bool = True, sync: bool = True) -> None:
    _hook("unlink", path)
    if _tracker is not None:
        _tracker.before_entry_change(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise
        return
    if sync:
        fsync_dir(path.parent)


def append(path: Path, data: bytes) -> int:
    """Append ``data`` durably; return the size before, for rollback by truncate."""
    _hook("open", path)
    if _tracker is not None:
        _tracker.before_content_change(path)
    created = not os.path.lexists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        before = os.fstat(fd).st_size
        if _tracker is not None and before == 0:
            _tracker.file_created(path)
        _write_all(fd, data, path)
        fsync_fd(fd, path)
    finally:
        os.close(fd)
    if _tracker is not None:
        _tracker.file_synced(path)
    if created:
        fsync_dir(path.parent)
    return before


def truncate(path: Path, size: int) -> None:
    _hook("truncate", path)
    if _tracker is not None:
        _tracker.before_content_change(path)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        fsync_fd(fd, path)
    finally:
        os.close(fd)
    if _tracker is not None:
        _tracker.file_synced(path)


def makedirs(path: Path, *, sync: bool = True) -> None:
    """Create ``path`` and missing parents, fsyncing each parent that gained
    an entry, so the new directory survives a crash (``sync=False``: it
    need not)."""
    missing: list[Path] = []
    cur = path
    while not cur.exists():
        missing.append(cur)
        cur = cur.parent
    for directory in reversed(missing):
        _hook("mkdir", directory)
        if _tracker is not None:
            _tracker.before_entry_change(directory)
        try:
            os.mkdir(directory)
        except FileExistsError:
            continue
        if sync:
            fsync_dir(directory.parent)


def remove_tree(path: Path, *, sync: bool = True) -> None:
    """Delete a directory tree (backups, staging); fsync its parent unless
    the caller batches that or does not need it."""
    if not os.path.lexists(path):
        return
    _hook("rmtree", path)
    if _tracker is not None:
        _tracker.before_tree_removal(path)
    if path.is_dir() and not path.is_symlink():
        try:
            os.rmdir(path)  # the common case after publish: nothing left inside
        except OSError:
            shutil.rmtree(path)
    else:
        os.unlink(path)
    if sync:
        fsync_dir(path.parent)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
