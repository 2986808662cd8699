"""Finishing a journal either way: roll back (before the commit point) or
clean up (after it). Both are idempotent, so a crash halfway through either
is repaired by running it again, which the next command does."""

from __future__ import annotations

import os
from pathlib import Path

from openkb import fsio
from openkb.commit.journal import Journal
from openkb.crashpoints import crashpoint
from openkb.layout import KBLayout

_STAGING_AREA = (".openkb/staging",)


def roll_back(layout: KBLayout, journal: Journal, *, keep_staged: bool) -> None:
    """Put every path the journal names back as it was before the transaction.

    Actions are undone in reverse, so an update's publish is undone before the
    stash of the file it replaced is restored. ``keep_staged`` moves published
    files back into staging (so the caller can retry them); recovery deletes
    them instead.
    """
    crashpoint("rollback.before")
    where = journal.where(layout)
    touched: set[Path] = set()
    for action in reversed(journal.actions):
        crashpoint("rollback.action")
        touched.add(action.undo(where, keep_staged=keep_staged))
    # Restored entries must be durable before the journal that could redo
    # this rollback goes away.
    fsio.fsync_dirs({d for d in touched if d.is_dir()})
    crashpoint("rollback.after")
    finish(layout, journal, sweep_staging=not keep_staged, sweep_tmp=True)


def finish(layout: KBLayout, journal: Journal, *, sweep_staging: bool, sweep_tmp: bool) -> None:
    """Delete the journal's backups, temp files, staging and the journal itself.

    Nothing here needs an fsync: if a power cut undoes any of it, the journal
    reappears, whole (it was fsynced and is never rewritten), and recovery
    runs this again; a backup dir that reappears without its journal is
    swept as a leftover.
    """
    discard_backups(layout, journal, sweep_staging=sweep_staging, sweep_tmp=sweep_tmp)
    retire_journal(layout, journal.txid)


def discard_backups(layout: KBLayout, journal: Journal, *, sweep_staging: bool,
                    sweep_tmp: bool) -> None:
    """Everything :func:`finish` deletes but the journal."""
    if sweep_tmp:
        where = journal.where(layout)
        names_by_dir: dict[Path, set[str]] = {}
        for action in journal.actions:
            target = where.live(action.target)
            names_by_dir.setdefault(target.parent, set()).add(target.name)
        for parent, names in names_by_dir.items():
            _sweep_tmp_files(parent, names)
    fsio.remove_tree(journal.backup_dir(layout), sync=False)
    if sweep_staging:
        for rel in journal.staging:
            fsio.remove_tree(layout.resolve(rel, areas=_STAGING_AREA), sync=False)


def retire_journal(layout: KBLayout, txid: str) -> None:
    """Delete a journal and its backup dir: last, so that until it is gone
    recovery can redo whatever came before."""
    fsio.remove_tree(Journal.backup_dir_for(layout, txid), sync=False)
    fsio.unlink(Journal.path_for(layout, txid), sync=False)


def _sweep_tmp_files(parent: Path, names: set[str]) -> None:
    """Remove temp files a crash left beside any of ``names`` in ``parent``."""
    try:
        entries = os.listdir(parent)
    except FileNotFoundError:
        return
    for entry in entries:
        if fsio.is_tmp_name(entry) and entry[1:].split(fsio.TMP_MARK)[0] in names:
            fsio.unlink(parent / entry, sync=False)
