"""The commit protocol: how a change reaches the KB, and the durability contract.

Every mutation (add, remove, update, recompile) is one transaction, run by
:func:`commit_changes` under the exclusive KB lock. The steps, what each makes
durable, and what recovery does if the process dies during or after it:

1. **journal** — ``.openkb/journal/<txid>.json`` lists every path the
   transaction will touch (relative to the KB root) and how: stash, publish,
   rewrite, append, attic. Written to a temp file, fsynced, renamed, the
   directory fsynced. *Crash before it is durable:* nothing was changed; the
   temp file is swept. *After:* recovery rolls back using it.
2. **snapshot** — before-images of the shared files this transaction
   rewrites (concept pages, index.md) are hard-linked into
   ``journal/<txid>/``: O(1) per file, the old inode survives the later
   rename. The backup directory is fsynced before any target changes.
   log.md needs no image: it is only appended to, and the journal holds its
   old size. *Crash:* rollback restores each image that exists; a target
   whose image does not exist yet was not touched.
3. **publish** — removed documents' files are renamed into the backup dir
   (O(1), undoable); staged raw/source/summary files (fsynced by the prepare
   stage that wrote them, so their data is already durable) are renamed
   into place, and every directory that changed is fsynced once. Backup dirs
   are fsynced before the dirs they were taken from, so a power cut can
   leave a file under two names, never under none.
   *Crash:* rollback moves stashed files back and deletes published ones.
4. **index** — inside ``BEGIN IMMEDIATE``, chunks are deleted/inserted in the
   FTS5 index. Nothing is durable yet; SQLite discards it on a crash.
5. **compile** — concept pages and index.md are rewritten atomically (temp,
   fsync, rename, one fsync per directory), vanished concepts stashed, and
   log lines appended and fsynced. *Crash:* rollback restores images,
   deletes new pages, truncates log.md.
6. **registry write** — document rows and key terms are written in the same
   SQLite transaction, with the txid in ``transactions``, then COMMIT
   (``synchronous=FULL``). **This COMMIT is the commit point.** *Crash before
   it returns:* SQLite rolls its part back, recovery rolls back the files.
   *After:* the txid is in the registry, so recovery rolls forward.
7. **mark committed** — the journal is marked ``committed``, then backups,
   staging and the journal are deleted. None of this is fsynced: if a power
   cut undoes any of it, recovery finds the txid committed and repeats it.

Recovery (:mod:`openkb.recovery`) runs on every exclusive lock acquisition
that finds a journal, and by `openkb recover`: txid in ``transactions`` means
roll forward (step 7), otherwise roll back. Both are idempotent, so a crash
during recovery is repaired by the next one. In-process failures (an
exception at any step, ENOSPC, EIO, Ctrl-C twice) take the same two paths
before the error reaches the caller.
"""

from openkb.commit.plan import ChangeSet, Removal
from openkb.commit.transaction import CommitOutcome, commit_changes

__all__ = ["ChangeSet", "CommitOutcome", "Removal", "commit_changes"]
