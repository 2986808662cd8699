"""An open knowledge base: where it is, its settings, its registry, its lock.

Writers enter :meth:`KB.exclusive`, which takes the lock and, before handing
control over, finishes any transaction a crashed process left (see
:mod:`openkb.recovery`). Readers use :meth:`KB.reader`, which does the same
if it can get the lock at once, and otherwise reads the registry as it is:
it only ever shows committed documents.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from openkb import fsio
from openkb.config import DEFAULT_CONFIG_TEXT, Config, load_config
from openkb.diskspace import Reserve
from openkb.errors import (
    JournalRefused,
    LockTimeout,
    NotAKnowledgeBase,
    OpenKBError,
    UnsafePath,
    UsageError,
)
from openkb.layout import KBLayout
from openkb.lock import Holder, KBLock
from openkb.pending import RecoveryReport, has_pending_journals, leftover_paths
from openkb.progress import Progress
from openkb.registry import Registry

log = logging.getLogger("openkb")

WaitCallback = Callable[[Holder | None, float], None]


def find_kb_root(explicit: str | None) -> Path:
    """``explicit`` (the API's ``kb_dir``), else ``OPENKB_DIR``, else the
    nearest parent of the current directory that holds a KB (as git finds
    its repository)."""
    chosen = explicit or os.environ.get("OPENKB_DIR")
    if chosen:
        layout = KBLayout.at(chosen)
        if not layout.is_kb():
            raise NotAKnowledgeBase(
                f"{layout.root} is not an openkb knowledge base",
                hint=f"create one with `openkb init {chosen}`",
            )
        return layout.root
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if KBLayout(candidate).is_kb():
            return candidate
    raise NotAKnowledgeBase(
        "no knowledge base here or in any parent directory",
        hint="name its directory, set OPENKB_DIR, or create one with `openkb init DIR`",
        argument="kb_dir",
    )


def init_kb(root: str | os.PathLike[str]) -> tuple[KBLayout, bool]:
    """Create a KB at ``root``; return (layout, created). Idempotent: an
    interrupted init is completed, an existing KB is left alone."""
    layout = KBLayout.at(root)
    if layout.is_kb():
        return layout, False
    if layout.root.exists() and not layout.root.is_dir():
        raise UsageError(f"{layout.root} exists and is not a directory")
    for directory in (layout.raw_dir, layout.sources_dir, layout.summaries_dir,
                      layout.concepts_dir, layout.journal_dir, layout.staging_dir,
                      layout.runs_dir):
        fsio.makedirs(directory)
    if not layout.config_path.exists():
        fsio.write_atomic(layout.config_path, DEFAULT_CONFIG_TEXT.encode())
    from openkb import catalog, pages  # only `init` renders pages here

    if not layout.index_md.exists():
        fsio.write_atomic(layout.index_md, catalog.render_catalog([], []).index.encode())
    if not layout.log_md.exists():
        fsio.write_atomic(layout.log_md, pages.LOG_HEADER.encode())
    layout.lock_path.touch()
    Reserve(layout, load_config(layout.config_path).disk_reserve_mb).ensure()
    # The database appears last, under its final name, by rename: a KB is a
    # KB only once everything above exists.
    tmp = fsio.tmp_path_for(layout.db_path)
    Registry.create(tmp).finish_creation()
    fsio.fsync_file(tmp)
    fsio.replace(tmp, layout.db_path)
    return layout, True


class KB:
    def __init__(self, root: Path, command: str, config: Config | None = None) -> None:
        self.layout = KBLayout.at(root)
        if not self.layout.is_kb():
            raise NotAKnowledgeBase(f"{self.layout.root} is not an openkb knowledge base")
        self.config = config or load_config(self.layout.config_path)
        self.command = command
        self._lock = KBLock(self.layout, command)
        self._registry: Registry | None = None
        self._swept = False
        self.recovery = RecoveryReport()

    @classmethod
    def open(cls, explicit: str | None, command: str) -> KB:
        """The KB; ``with KB.open(...) as kb:`` closes it however the block ends."""
        return cls(find_kb_root(explicit), command)

    def __enter__(self) -> KB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def reserve(self) -> Reserve:
        return Reserve(self.layout, self.config.disk_reserve_mb)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.open(self.layout.db_path)
        return self._registry

    def _open_for_reading(self) -> Registry | None:
        try:
            return Registry.open_for_reading(self.layout.db_path)
        except OpenKBError:
            return None  # reading will say what is wrong

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    @contextmanager
    def exclusive(self, progress: Progress, *, timeout: float | None = None,
                  on_wait: WaitCallback | None = None, recover: bool = True,
                  release_reserve: bool = False) -> Iterator[float]:
        """Hold the KB lock; yields seconds waited. Pending journals are
        finished first, every time, so this command never builds on a
        half-done transaction (``recover=False`` is for `verify`, which
        reports them instead). ``release_reserve``: the command is about to
        remove documents; on a full disk the reserve makes room for it
        (:mod:`openkb.diskspace`), before anything opens the registry."""
        if timeout is None:
            timeout = self.config.lock_timeout_s
        progress.emit("lock_wait", "start", "lock_wait")
        start = time.perf_counter()
        try:
            waited = self._lock.acquire(timeout=timeout, on_wait=on_wait)
        except LockTimeout as exc:
            progress.emit("lock_wait", "done", "lock_wait", outcome="timeout",
                          dur_ms=round((time.perf_counter() - start) * 1000, 3), error=str(exc))
            raise
        dur_ms = (time.perf_counter() - start) * 1000
        progress.add_busy("lock_wait", dur_ms)
        progress.emit("lock_wait", "done", "lock_wait", dur_ms=round(dur_ms, 3), outcome="ok")
        progress.emit("lock_acquired", "point", "lock")
        try:
            if release_reserve:
                self.reserve.release_if_short()
            if recover:
                self._recover(progress)
            if not has_pending_journals(self.layout):
                self._upgrade(progress)
                if recover:  # a KB made before the reserve existed gets one here
                    self.reserve.ensure()
            yield waited
        finally:
            self._lock.release()
            progress.emit("lock_released", "point", "lock")

    def _recover(self, progress: Progress) -> None:
        # Draining needs no symlink check (each journaled path is resolved
        # and refused if it leads out), and a refused journal is the first
        # thing the user must hear about; the sweep deletes whole folders.
        # Imported here: readers of a clean KB never get this far.
        from openkb.recovery import drain_pending_journals, sweep_leftovers

        drain_pending_journals(self.layout, self.registry, progress, self.recovery)
        self.layout.check_no_symlinks()
        if not self._swept:
            sweep_leftovers(self.layout, self.recovery)
            self._swept = True

    def _upgrade(self, progress: Progress) -> None:
        """Bring a KB an earlier openkb wrote up to date (see
        :mod:`openkb.registry.migrations`): after recovery, so no journal of
        the old format is left half-done under the new schema."""
        if self.registry.pending_migrations():
            with progress.span("upgrade", "upgrade") as done:
                applied = self.registry.upgrade()
                done["migrations"] = [m.name for m in applied]
            for migration in applied:
                log.warning("upgraded the KB: %s", migration.does)
        if self.registry.needs_recompile():
            # Imported here: commit imports this module's neighbours, and
            # only an upgrade needs it.
            from openkb.commit import ChangeSet, commit_changes

            log.warning("upgraded the KB: recompiling every page in the new format")
            commit_changes(self.layout, self.registry, ChangeSet(op="upgrade", recompile=True),
                           progress)

    def reader(self, progress: Progress) -> Registry:
        """The registry for reading. If a crash left journals or leftovers and
        nobody holds the lock, finish and sweep them first, so the files match
        what we report and `verify` finds nothing after any command. A KB an
        earlier openkb wrote is upgraded first, waiting for the lock if need
        be: this openkb cannot read it as it is."""
        reading = self._open_for_reading()
        upgrade = reading is not None and bool(reading.pending_migrations()
                                               or reading.needs_recompile())
        if upgrade or has_pending_journals(self.layout) or leftover_paths(self.layout):
            if reading is not None:
                reading.close()  # what follows may change the registry under it
                reading = None
            try:
                with self.exclusive(progress, timeout=None if upgrade else 0):
                    pass
            except LockTimeout:
                if upgrade:
                    raise
                # a live writer owns those journals; the registry is still consistent
            except (JournalRefused, UnsafePath) as exc:
                # Reading stays possible: the registry shows committed state.
                log.warning("%s (%s)", exc, exc.hint)
        if self._registry is None:
            # The connection that asked about upgrades, if nothing changed since.
            self._registry = reading or Registry.open_for_reading(self.layout.db_path)
        elif reading is not None:
            reading.close()
        return self._registry
