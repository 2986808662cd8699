"""Committing prepared documents: a group per transaction, under the lock,
in scan order.

Consecutive prepared documents commit as one group (one SQLite COMMIT, one
rewrite of index.md) up to ``commit_group_size``; a group that fails is
rolled back and its members retried one by one, so one bad document never
takes others down with it. Under the lock, each document is checked again
against what the prefilter decided without it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from openkb import (
    commit,  # its names load on first use
    fsio,
)
from openkb.diskspace import DiskFull, full_disk_cause, is_disk_full
from openkb.errors import CommitFailed
from openkb.ingest.report import Tally
from openkb.kb import KB, WaitCallback
from openkb.lock import Holder
from openkb.model import FileFailure, PreparedDocument, Skipped
from openkb.prefilter import NameReservations

timing_log = logging.getLogger("openkb.timing")


class StopWaiting(Exception):
    """Raised out of a lock wait when the user asked the run to stop."""


class GroupCommitter:
    def __init__(self, kb: KB, tally: Tally, reservations: NameReservations, *,
                 lock_timeout: float | None, on_lock_wait: Callable[[Holder | None, float], None],
                 prefilter_ms: dict[int, float]) -> None:
        self.kb = kb
        self.layout = kb.layout
        self.tally = tally
        self.progress = tally.progress
        self.reservations = reservations
        self.lock_timeout = lock_timeout
        self.on_lock_wait: WaitCallback = on_lock_wait
        self.prefilter_ms = prefilter_ms
        self.last_commit = time.monotonic()

    def commit_group(self, group: list[PreparedDocument]) -> None:
        try:
            with self.kb.exclusive(self.progress, timeout=self.lock_timeout,
                                   on_wait=self.on_lock_wait) as waited:
                ready = [doc for doc in group if self._still_wanted(doc)]
                if ready:
                    self._commit_docs(ready, waited * 1000)
        except StopWaiting:
            pass  # Ctrl-C while waiting for the lock: nothing was in flight

    def _commit_docs(self, docs: list[PreparedDocument], lock_wait_ms: float) -> None:
        changes = commit.ChangeSet(
            op="add", added=docs,
            removed=[commit.Removal(doc.replaces) for doc in docs if doc.replaces])
        staging = [self.layout.rel(Path(p)) for doc in docs for p in doc.staged_paths]
        try:
            outcome = commit.commit_changes(self.layout, self.kb.registry, changes, self.progress,
                                     staging=staging)
        except CommitFailed as exc:
            if is_disk_full(exc):  # not these documents' fault: stop the run
                self._commit_what_fits(docs)
                raise DiskFull(full_disk_cause(exc)) from exc
            if len(docs) > 1:
                for doc in docs:  # find the one that failed; commit the others
                    self._commit_docs([doc], 0.0)
                return
            self.tally.fail(FileFailure(docs[0].seq, docs[0].display, str(exc)))
            discard_staged(docs[0])
            return
        for doc in docs:
            self.tally.committed(doc.name, doc.display, doc.size, updated=bool(doc.replaces))
            prefilter_ms = self.prefilter_ms.pop(doc.seq, 0.0)
            self.reservations.release(doc.name, doc.sha256)
            if timing_log.isEnabledFor(logging.DEBUG):
                timing_log.debug(self._timing_line(doc, lock_wait_ms, prefilter_ms,
                                                   outcome.step_ms, len(docs)))
        self.last_commit = time.monotonic()
        self.progress.emit("committed", "point", "commit", txid=outcome.txid,
                           doc=[d.name for d in docs][:20],
                           counts=self.tally.counts.as_dict(),
                           bytes=sum(d.size for d in docs))

    def _commit_what_fits(self, docs: list[PreparedDocument]) -> None:
        """The disk filled up committing ``docs``: their staged files take
        much of it. Give up the second half's (those files are left for the
        next run, as if never tried) and commit the first, halving again
        while the disk is still too full."""
        if len(docs) < 2:
            return
        half = len(docs) // 2
        for doc in docs[half:]:
            discard_staged(doc)
        with contextlib.suppress(DiskFull):  # halved again inside, down to what fits
            self._commit_docs(docs[:half], 0.0)

    def _still_wanted(self, doc: PreparedDocument) -> bool:
        """Re-check, under the lock, what the prefilter decided without it."""
        registry = self.kb.registry
        holder = registry.name_by_sha(doc.sha256)
        if holder is not None:
            self.tally.skip(Skipped(doc.display, "duplicate", holder))
            discard_staged(doc)
            self.reservations.forget_content(doc.sha256)  # the registry answers for it
            return False
        if doc.replaces:
            replaced = registry.document(doc.replaces)
            if replaced is None or replaced.origin != doc.origin:
                # Removed meanwhile (perhaps its name reused for another file):
                # this is a plain add now.
                doc.replaces = None
        if not doc.replaces:
            # Name it again as the prefilter would now: another process may
            # have taken the name since, or a crashed commit that held a
            # better one on disk has been rolled back by the lock's recovery.
            wanted = self.reservations.reserve_again(doc.name, doc.display)
            if wanted != doc.name:
                from openkb.prepare.stage import rename_prepared  # rare: a name taken

                rename_prepared(doc, wanted)
        return True

    def _timing_line(self, doc: PreparedDocument, lock_wait_ms: float, prefilter_ms: float,
                     step_ms: dict[str, float], group: int) -> str:
        prepare = {k: v for k, v in doc.timings_ms.items() if k != "llm_wait"}
        parts = [f"lock_wait={lock_wait_ms:.1f}ms",
                 f"prefilter={prefilter_ms:.1f}ms",
                 f"prepare={sum(prepare.values()):.1f}ms"]
        if "llm_wait" in doc.timings_ms:  # time the LLM stage spent on its call
            parts.append(f"llm_wait={doc.timings_ms['llm_wait']:.1f}ms")
        parts += [f"{step}={ms:.1f}ms" for step, ms in step_ms.items()]
        parts.append(f"commit={sum(step_ms.values()):.1f}ms")
        return f"{doc.name}: " + " ".join(parts) + (f" (group of {group})" if group > 1 else "")


def discard_staging(path: Path) -> None:
    """Staging is scratch space: failing to delete it (a full disk, EIO) is
    no reason to fail the ingest; recovery sweeps what is left."""
    try:
        fsio.remove_tree(path, sync=False)
    except OSError as exc:
        logging.getLogger("openkb").warning("could not remove %s (%s); the next openkb "
                                            "command sweeps it", path, exc.strerror or exc)


def discard_staged(doc: PreparedDocument) -> None:
    for path in doc.staged_paths:
        discard_staging(Path(path))
