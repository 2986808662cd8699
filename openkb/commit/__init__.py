"""The commit protocol: how a change reaches the KB, and the durability contract.

Every mutation (add, remove, update, move, recompile) is one transaction, run by
:func:`commit_changes` under the exclusive KB lock. The steps, what each makes
durable, and what recovery does if the process dies during or after it:

1. **journal** — ``.openkb/journal/<txid>.json`` lists every path the
   transaction will touch (relative to the KB root) and how: stash, publish,
   rewrite, append, attic. Written to a temp file, fsynced, renamed, the
   directory fsynced, and never rewritten afterwards: recovery reads it, so
   it is never replaced by bytes that were not fsynced. *Crash before it is
   durable:* nothing was changed; the temp file is swept. *After:* recovery
   rolls back using it.
2. **snapshot** — before-images of the shared files this transaction
   rewrites (concept pages that lose a document or become concepts,
   index.md) are hard-linked into ``journal/<txid>/``: O(1) per file, the
   old inode survives the later rename. The backup directory is fsynced
   before any target changes. Appended files (log.md, concept pages that
   only gain documents) need no image: the journal holds their old size.
   *Crash:* rollback restores each image that exists; a target whose image
   does not exist yet was not touched.
3. **publish** — removed documents' files are renamed into the backup dir
   (O(1), undoable); staged raw/source/summary files (fsynced by the prepare
   stage that wrote them, so their data is already durable) are renamed
   into place, and every directory that changed is fsynced once. Backup dirs
   are fsynced before the dirs they were taken from, so a power cut can
   leave a file under two names, never under none.
   *Crash:* rollback moves stashed files back and deletes published ones.
4. **index** — inside ``BEGIN IMMEDIATE``, chunks are deleted/inserted in the
   FTS5 index. Nothing is durable yet; SQLite discards it on a crash.
5. **compile** — concept pages and index.md are rewritten
   atomically (temp, fsync, rename, one fsync per directory), vanished
   concepts stashed, and lines appended to concept pages and log.md, each
   append fsynced. The data fsyncs of a step's files are issued together
   (:mod:`openkb.fsio_many`), so the filesystem's journal commits them
   at once; no file is renamed into place before all of them returned.
   *Crash:* rollback restores images, deletes new pages, truncates each
   appended file to the size the journal recorded (an append cut short by a
   power cut included).
6. **registry write** — document rows and key terms are written in the same
   SQLite transaction, with the txid in ``transactions``, then COMMIT
   (``synchronous=FULL``). **This COMMIT is the commit point.** *Crash before
   it returns:* SQLite rolls its part back, recovery rolls back the files.
   *After:* the txid is in the registry, so recovery rolls forward.
7. **mark committed** — the journal is retired: backups and staging are
   deleted, then the journal itself. Its absence is the mark; the txid in
   ``transactions`` is the truth. None of this is fsynced: if a power cut
   undoes any of it, the journal reappears whole (it was fsynced and never
   rewritten), recovery finds the txid committed and repeats the cleanup;
   a backup dir that reappears without its journal is swept as a leftover.
   (An fsynced "committed" rewrite of the journal was measured at 1.35 ms
   per one-document commit for this step, against 0.60 ms for deleting it:
   `python -m bench --only commit_steps`.)

Recovery (:mod:`openkb.recovery`) runs on every exclusive lock acquisition
that finds a journal, and by `openkb recover`: the txid in the journal's
name found in ``transactions`` means roll forward (step 7), otherwise roll
back. Both are idempotent, so a crash during recovery is repaired by the
next one. A journal file that does not parse (an earlier release could
leave one empty after a power cut) is decided by that txid alone: committed,
its cleanup is finished from its backup dir and the leftover sweep; not
committed, it never became durable, so it changed nothing and is removed.
In-process failures (an exception at any step, ENOSPC, EIO, Ctrl-C twice)
take the same two paths before the error reaches the caller.

What a power cut may leave empty or short, and why each is safe (a power
cut can keep a rename or a create and lose the data behind it, on
filesystems that write metadata before data):

- ``.openkb/lock.holder.json`` and ``.openkb/runs/*.json``: advisory
  records written without fsync (they are rewritten often and describe
  processes that a power cut has killed anyway). A reader that cannot parse
  one treats it as absent; recovery sweeps dead runs' records.
- temp files (``.<name>.openkb-tmp-<pid>-<n>``) of any atomic write: never
  renamed into place unless fsynced first (except the two records above);
  swept by recovery.
- an append to log.md or a concept page cut short before its fsync: only
  before the commit point, where rollback truncates to the journaled size.
- staging files: their data fsynced by the worker (together, one journal
  commit) before they are handed to commit, their directory entries not:
  publish renames them and fsyncs the target directories, which is what
  makes the names durable; a staging dir whose run died is swept whole.
- progress JSONL (outside the KB): appended without fsync; `openkb progress
  summarize` skips a torn last line.

Nothing else is written without an fsync before the commit point depends
on it; SQLite makes its own file durable at the COMMIT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openkb.commit.plan import ChangeSet, Move, Removal
    from openkb.commit.transaction import CommitOutcome, commit_changes

__all__ = ["ChangeSet", "CommitOutcome", "Move", "Removal", "commit_changes"]

# Loaded on first use: recovery, which every command may run, needs only
# the journal and undo modules, not planning and compiling (pages, index).
_LAZY = {"ChangeSet": "plan", "Move": "plan", "Removal": "plan", "CommitOutcome": "transaction",
         "commit_changes": "transaction"}


def preload() -> None:
    """Import the commit path now: a run about to commit can do it while it
    waits for something else (its workers starting)."""
    import importlib

    for module in sorted(set(_LAZY.values())):
        importlib.import_module(f"{__name__}.{module}")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
