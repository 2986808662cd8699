"""Finding the input files: directories walked in a stable order, without surprises.

- Entries are sorted by their byte names, so scan order (and so doc names and
  log order) is the same on every run and with every ``--jobs``.
- Hidden files and directories and any ``.openkb`` are skipped, and so is the
  KB itself if it lies inside an input directory.
- Symlinks are not followed unless ``follow_symlinks`` is set, and even then
  never out of the input directory they were found in, and never in a loop.
- FIFOs, sockets and devices are skipped by ``lstat``, without opening them
  (opening a FIFO blocks).
- The walk is iterative, so nesting depth is not bounded by the stack.
- A name that is not valid UTF-8 (a legacy archive's ``caf\\xe9.md``) fails
  that file, or that directory, with a reason: every later stage stores and
  prints names as UTF-8. Reported names escape the bad bytes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from openkb.model import NO_SEQ, FileFailure, ScanEntry, Skipped
from openkb.prepare.sniff import is_supported

SCAN_PROGRESS_EVERY = 1000
NOT_UTF8_FILE = "file name is not valid UTF-8: rename it to add it"
NOT_UTF8_DIR = "directory name is not valid UTF-8: rename it to add the files in it"


@dataclass
class ScanResult:
    entries: list[ScanEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)


def scan_inputs(
    inputs: list[str],
    *,
    kb_root: Path,
    follow_symlinks: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ScanResult:
    result = ScanResult()
    seen_files: dict[tuple[int, int], str] = {}
    kb_real = os.path.realpath(kb_root)

    def add_file(path: str, display: str, st: os.stat_result) -> None:
        """``path`` is what to open (a followed symlink's target), ``display``
        what the user named."""
        if not _utf8_name(path) or (display is not path and not _utf8_name(display)):
            result.failed.append(FileFailure(NO_SEQ, display, NOT_UTF8_FILE))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_files:  # named twice: overlapping inputs, hard or sym links
            result.skipped.append(Skipped(display, "duplicate-in-run", seen_files[key]))
            return
        seen_files[key] = display
        if not is_supported(path):
            result.skipped.append(Skipped(display, "unsupported"))
            return
        result.entries.append(ScanEntry(len(result.entries), _absolute(path), display,
                                        st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino,
                                        st.st_ctime_ns))
        if on_progress is not None and len(result.entries) % SCAN_PROGRESS_EVERY == 0:
            on_progress(len(result.entries))

    for arg in inputs:
        try:
            st = os.stat(arg)
        except OSError as exc:
            result.failed.append(FileFailure(NO_SEQ, arg, f"cannot read: {exc.strerror}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(arg, kb_real, follow_symlinks, add_file, result)
        elif stat.S_ISREG(st.st_mode):
            real = os.path.realpath(arg)  # named explicitly: followed
            if _inside(real, kb_real):
                result.skipped.append(Skipped(arg, "hidden", "inside the knowledge base"))
            else:
                add_file(real, arg, st)
        else:
            result.skipped.append(Skipped(arg, "special"))
    if on_progress is not None:
        on_progress(len(result.entries))
    result.skipped = [replace(s, display=_shown(s.display), detail=_shown(s.detail))
                      for s in result.skipped]
    result.failed = [replace(f, display=_shown(f.display)) for f in result.failed]
    return result


def _walk(top: str, kb_real: str, follow_symlinks: bool,
          add_file: Callable[[str, str, os.stat_result], None], result: ScanResult) -> None:
    top_real = os.path.realpath(top)
    if _inside(top_real, kb_real):
        result.skipped.append(Skipped(top, "hidden", "the knowledge base itself"))
        return
    # The KB is found by its inode, not by resolving every directory's path:
    # realpath costs one lstat per level, quadratic in a deep tree.
    try:
        kb_key: tuple[int, int] | None = _dir_key(kb_real)
    except OSError:
        kb_key = None
    visited_dirs = {_dir_key(top): top}  # (dev, inode) -> the path it was walked as
    # Depth-first, children in sorted order: a stack of iterators would do,
    # but a stack of pending paths (pushed in reverse) keeps it simple.
    stack: list[str] = [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            result.failed.append(FileFailure(NO_SEQ, directory, f"cannot list: {exc.strerror}"))
            continue
        subdirs: list[str] = []
        for entry in children:
            path = target = entry.path
            if entry.name.startswith("."):
                result.skipped.append(Skipped(path, "hidden"))
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    if not follow_symlinks:
                        result.skipped.append(Skipped(path, "symlink"))
                        continue
                    target = os.path.realpath(path)
                    if _inside(target, kb_real):
                        result.skipped.append(Skipped(path, "symlink",
                                                      "points into the knowledge base"))
                        continue
                    if not _inside(target, top_real):
                        result.skipped.append(Skipped(path, "symlink", "points outside the input"))
                        continue
                    st = os.stat(target)
            except OSError as exc:
                result.failed.append(FileFailure(NO_SEQ, path, f"cannot read: {exc.strerror}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in visited_dirs:
                    result.skipped.append(_seen_dir(path, target, visited_dirs[key]))
                    continue
                visited_dirs[key] = path
                if key == kb_key:
                    result.skipped.append(Skipped(path, "hidden", "the knowledge base itself"))
                    continue
                if not _utf8_name(path) or not _utf8_name(target):
                    result.failed.append(FileFailure(NO_SEQ, path, NOT_UTF8_DIR))
                    continue
                subdirs.append(target)
            elif stat.S_ISREG(st.st_mode):
                add_file(target, path, st)
            else:
                result.skipped.append(Skipped(path, "special"))
        stack.extend(reversed(subdirs))


def _seen_dir(path: str, target: str, first: str) -> Skipped:
    """A directory reached a second time: through a symlink (a loop, or an
    alias), or for real after a followed symlink got there first."""
    if path == target:
        return Skipped(path, "duplicate-in-run", f"already scanned through {first}")
    if _inside(os.path.realpath(os.path.dirname(path)), target):
        return Skipped(path, "symlink", "directory loop")
    return Skipped(path, "symlink", f"same directory as {first}")


def _absolute(path: str) -> str:
    """``os.path.abspath(path)``, without its cost for the paths a walk of
    an absolute folder yields, which are absolute and normal already."""
    if (path.startswith("/") and "/." not in path and "//" not in path
            and not path.endswith("/")):
        return path
    return os.path.abspath(path)


def _utf8_name(path: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (Python keeps them
    as lone surrogates, which no UTF-8 encoder accepts)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path: str) -> str:
    """``path`` as it can be printed and stored: bad bytes as ``\\xNN``."""
    if _utf8_name(path):
        return path
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _dir_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
