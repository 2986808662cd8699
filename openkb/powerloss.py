"""A power-loss model for the fsio layer (test mode, ``OPENKB_POWERLOSS``).

kill -9 cannot show that the fsync discipline is right: the kernel keeps the
page cache and writes it back after the process dies. A power cut loses
what was not yet fsynced. This tracker remembers, for every path fsio
touches, the state that is *durable*:

- a directory entry (which inode a name points to, or that it is absent) is
  durable once its parent directory has been fsynced;
- file content is durable once the file has been fsynced.

A real filesystem may also write metadata it was never asked to sync (ext4
commits its journal every few seconds; data=writeback and XFS write
metadata before data), so a power cut has two extreme outcomes, one per
mode, and every outcome between them mixes the two:

- ``OPENKB_POWERLOSS=1`` (``drop``): every entry change and every write not
  fsynced is lost; each touched path goes back to its durable state.
- ``OPENKB_POWERLOSS=torn``: every entry change survives (creates, renames,
  unlinks), but data that was never fsynced does not: a file created or
  appended to without an fsync comes back cut at a 4 KiB boundary (a file
  under 4 KiB comes back empty; an append keeps at least its durable part).

When a crash point fires, :meth:`DurabilityTracker.drop_unsynced` applies
the mode, and the process is then killed. Paths seen for the first time,
and inodes fsio did not create (a worker's fsynced staging file, a hard
link to an existing file), are durable as found. SQLite is not modelled: it
does its own fsyncs, and the point of the model is to check ours against
its commit point.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_DIR = ("dir",)
PAGE = 4096

MODES = ("drop", "torn")


class DurabilityTracker:
    def __init__(self, mode: str = "drop") -> None:
        if mode not in MODES:
            raise ValueError(f"power-loss mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        # path -> durable entry: None (absent), _DIR, or an inode key
        self._entry: dict[str, object] = {}
        # inode key -> durable bytes
        self._content: dict[tuple[int, int], bytes] = {}
        # inodes whose current bytes may be more than their durable bytes
        self._unsynced: set[tuple[int, int]] = set()
        self._by_parent: dict[str, set[str]] = {}

    # -- observation -----------------------------------------------------
    @staticmethod
    def _current(path: str) -> object:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if os.path.isdir(path) and not os.path.islink(path):
            return _DIR
        return (st.st_dev, st.st_ino)

    def _capture(self, path: str) -> None:
        if path in self._entry:
            return
        state = self._current(path)
        self._entry[path] = state
        self._by_parent.setdefault(os.path.dirname(path), set()).add(path)
        if isinstance(state, tuple) and state is not _DIR and state not in self._content:
            self._content[state] = Path(path).read_bytes()

    def before_entry_change(self, path: Path) -> None:
        self._capture(os.fspath(path))

    def before_content_change(self, path: Path) -> None:
        p = os.fspath(path)
        self._capture(p)
        state = self._current(p)
        if isinstance(state, tuple) and state is not _DIR:
            self._content.setdefault(state, Path(p).read_bytes())
            self._unsynced.add(state)

    def before_tree_removal(self, path: Path) -> None:
        top = os.fspath(path)
        self._capture(top)
        if os.path.isdir(top) and not os.path.islink(top):
            for dirpath, dirnames, filenames in os.walk(top):
                for name in dirnames + filenames:
                    self._capture(os.path.join(dirpath, name))

    def file_created(self, path: Path) -> None:
        """A new inode starts with no durable content (its number may be a
        reused one whose old content we still remember)."""
        state = self._current(os.fspath(path))
        if isinstance(state, tuple) and state is not _DIR:
            self._content[state] = b""
            self._unsynced.add(state)

    def file_synced(self, path: Path) -> None:
        p = os.fspath(path)
        self._capture(p)
        state = self._current(p)
        if isinstance(state, tuple) and state is not _DIR:
            self._content[state] = Path(p).read_bytes()
            self._unsynced.discard(state)

    def dir_synced(self, path: Path) -> None:
        for child in self._by_parent.get(os.fspath(path), ()):
            state = self._current(child)
            self._entry[child] = state
            if isinstance(state, tuple) and state is not _DIR and state not in self._content:
                # An inode fsio did not create (a hard link to an existing
                # file, a worker's fsynced staging file): durable as found.
                self._content[state] = Path(child).read_bytes()

    # -- the power cut ---------------------------------------------------
    def drop_unsynced(self) -> None:
        """Apply the power cut of this tracker's mode to every touched path."""
        if self.mode == "torn":
            self._tear_unsynced_data()
        else:
            self._restore_durable_state()
        os.sync()

    def _tear_unsynced_data(self) -> None:
        """Entries stay as they are; data never fsynced is cut at a page."""
        torn: set[tuple[int, int]] = set()
        for path in list(self._entry):
            state = self._current(path)
            if state not in self._unsynced or state in torn:
                continue
            torn.add(state)  # type: ignore[arg-type]
            current = Path(path).read_bytes()
            durable = self._content.get(state, b"")  # type: ignore[arg-type]
            keep = len(current) // PAGE * PAGE
            if current.startswith(durable):
                keep = max(keep, len(durable))
            if keep < len(current):
                os.truncate(path, keep)

    def _restore_durable_state(self) -> None:
        """Put every touched path back to its durable state."""
        items = sorted(self._entry.items(), key=lambda kv: kv[0].count(os.sep))
        for path, state in items:
            if state is _DIR and not os.path.isdir(path):
                _remove(path)
                os.makedirs(path, exist_ok=True)
        for path, state in items:
            if isinstance(state, tuple) and state is not _DIR:
                _remove(path)
                if os.path.isdir(os.path.dirname(path)):
                    with open(path, "wb") as out:
                        out.write(self._content.get(state, b""))
        for path, state in reversed(items):
            if state is None:
                _remove(path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)
