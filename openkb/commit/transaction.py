"""Running one planned transaction through the steps of :mod:`openkb.commit`."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from openkb import fsio, fsio_many
from openkb.commit import undo
from openkb.commit.catalog_plan import INDEX_SHA_KEY
from openkb.commit.plan import ChangeSet, Plan, plan_changes
from openkb.crashpoints import crashpoint
from openkb.errors import CommitFailed
from openkb.layout import KBLayout
from openkb.progress import Progress
from openkb.registry import Registry, RegistryWriter

log = logging.getLogger("openkb")


@dataclass
class CommitOutcome:
    txid: str
    added: list[str]
    removed: list[str]
    step_ms: dict[str, float]


def commit_changes(layout: KBLayout, registry: Registry, changes: ChangeSet,
                   progress: Progress, *, staging: list[str] | None = None) -> CommitOutcome:
    """Plan and run one transaction. The caller holds the exclusive lock.

    On any exception the transaction is finished before the exception
    propagates: rolled back (staged files go back to staging, so the caller
    may retry them), or, if the commit point had passed, rolled forward.
    """
    plan = plan_changes(layout, registry, changes, staging or [])
    journal = plan.journal
    step_ms: dict[str, float] = {}
    docs = journal.docs if len(journal.docs) <= 20 else [*journal.docs[:20], "…"]
    fields = {"txid": journal.txid, "doc": docs[0] if len(docs) == 1 else docs}

    def step(name: str) -> contextlib.AbstractContextManager[None]:
        return _timed(progress, name, fields, step_ms)

    # What the compile step writes: the measure of a commit's cost that must
    # not grow with the KB (bench: growth and commit_size).
    page_bytes = sum(len(data) for _, data in (*plan.rewrites, *plan.appends))
    with progress.span("commit", "commit", op=changes.op, pages=len(plan.rewrites) +
                       len(plan.appends), page_bytes=page_bytes, **fields):
        try:
            with step("journal"):
                crashpoint("journal.before")
                journal.write(layout)
                crashpoint("journal.after")
            with step("snapshot"):
                _snapshot(layout, plan)
            with step("publish"):
                _publish(layout, plan)
            with registry.write_transaction() as writer:
                with step("index"):
                    crashpoint("index.before")
                    for name in plan.removed_names:
                        writer.delete_chunks(name)
                    for doc in changes.added:
                        writer.insert_chunks(doc.name, doc.chunks)
                    crashpoint("index.after")
                with step("compile"):
                    _compile(layout, plan)
                with step("registry_write"):
                    crashpoint("registry_write.before")
                    _write_registry(writer, plan, changes)
                    writer.commit()
                    crashpoint("registry_write.after")
        except BaseException as exc:
            committed = _finish_after_failure(layout, registry, plan, progress)
            if not isinstance(exc, (OSError, sqlite3.Error)):
                raise
            if not committed:
                raise CommitFailed(
                    f"{changes.op} failed and was rolled back: {exc}",
                    hint="free space or fix the disk error, then run the command again",
                ) from exc
            # The COMMIT had happened when the error came (the registry says
            # so): the change stands, and its cleanup is done.
            log.warning("%s committed, then hit an error (%s); nothing is lost", changes.op, exc)
            return CommitOutcome(journal.txid, [d.name for d in changes.added],
                                 plan.removed_names, step_ms)
        with step("mark_committed"):
            crashpoint("mark_committed.before")
            try:
                undo.discard_backups(layout, journal, sweep_staging=True, sweep_tmp=False)
                crashpoint("mark_committed.cleaned")
                undo.retire_journal(layout, journal.txid)
            except OSError as exc:
                # The transaction has happened; only its cleanup failed. The
                # journal stays, and the next lock holder finishes the cleanup.
                log.warning("%s committed; cleaning up after it failed (%s); the next "
                            "openkb command finishes it", changes.op, exc)
            crashpoint("mark_committed.after")
    return CommitOutcome(journal.txid, [d.name for d in changes.added], plan.removed_names,
                         step_ms)


@contextmanager
def _timed(progress: Progress, name: str, fields: dict,
           step_ms: dict[str, float]) -> Iterator[None]:
    extra: dict = {}
    try:
        with progress.span(name, name, **fields) as extra:
            yield
    finally:
        step_ms[name] = extra.get("dur_ms", 0.0)


def _snapshot(layout: KBLayout, plan: Plan) -> None:
    journal = plan.journal
    where = journal.where(layout)
    crashpoint("snapshot.before")
    fsio.makedirs(where.backup_dir)
    linked = False
    for action, _ in plan.rewrites:
        if action.backup is not None:
            crashpoint("snapshot.file")
            linked = action.snapshot(where) or linked
    if linked:
        # Before-images are durable before any target is overwritten.
        fsio.fsync_dir(where.backup_dir)
    crashpoint("snapshot.after")


def _publish(layout: KBLayout, plan: Plan) -> None:
    where = plan.journal.where(layout)
    crashpoint("publish.before")
    aside: set[Path] = set()
    targets: set[Path] = set()
    for action in plan.publish:
        crashpoint("publish.file")
        went, target_dir = action.apply(where)
        if went is not None:
            aside.add(went)
        targets.add(target_dir)
    # Where a stashed file went, before the dirs it left: a power cut can
    # then leave it under two names, never under none.
    fsio.fsync_dirs(aside)
    fsio.fsync_dirs(targets)
    crashpoint("publish.after")


def _compile(layout: KBLayout, plan: Plan) -> None:
    where = plan.journal.where(layout)
    crashpoint("compile.before")
    writes = [(where.planned(action.target), content) for action, content in plan.rewrites]
    for folder in sorted({path.parent for path, _ in writes}):
        if not folder.is_dir():  # the catalog's folders, on the first commit that pages
            fsio.makedirs(folder)
    fsio_many.write_many_atomic(writes, before_each_replace=lambda: crashpoint("compile.file"))
    if plan.compile_stashes:
        moved = [action.apply(where) for action in plan.compile_stashes]
        fsio.fsync_dirs({went for went, _ in moved})
        fsio.fsync_dirs({target_dir for _, target_dir in moved})
    # Appends fsynced together (fsio_many): undone by truncating to the
    # sizes the journal holds, whichever of them reached the disk.
    fsio_many.append_many([(where.planned(action.target), data)
                           for action, data in plan.appends if data],
                          before_each=lambda: crashpoint("compile.file"))
    crashpoint("compile.after")


def _write_registry(writer: RegistryWriter, plan: Plan, changes: ChangeSet) -> None:
    """Everything the commit point makes true at once, the txid included."""
    journal = plan.journal
    for name in plan.removed_names:
        writer.delete_document(name)
    for row in plan.rows:
        writer.insert_document(row)
    for move in plan.moved:
        writer.update_origin(move.name, move.origin)
    for name, info in plan.info_updates.items():
        writer.update_info(name, info)
    for name, sha in plan.summary_updates:
        writer.update_summary_sha(name, sha)
    writer.set_meta(INDEX_SHA_KEY, plan.index_sha256)
    if changes.recompile:
        writer.clear_pending_recompile()
    writer.record_transaction(journal.txid, changes.op, journal.docs, journal.created)


def _finish_after_failure(layout: KBLayout, registry: Registry, plan: Plan,
                          progress: Progress) -> bool:
    """Decide by the registry, as recovery would, which way to finish;
    True if forward (the commit point had passed)."""
    journal = plan.journal
    try:
        if registry.has_transaction(journal.txid):
            undo.finish(layout, journal, sweep_staging=True, sweep_tmp=True)
            return True
        with progress.span("rollback", "rollback", txid=journal.txid):
            undo.roll_back(layout, journal, keep_staged=True)
        return False
    except Exception as exc:
        raise CommitFailed(
            f"{journal.op} failed, and so did its rollback ({exc}); the journal "
            f"{journal.path(layout).name} is kept",
            hint="run `openkb recover` once the cause is fixed",
        ) from exc
