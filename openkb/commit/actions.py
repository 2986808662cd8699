"""The actions a journal lists: what each step of a transaction does to one
path, what that makes durable, and how recovery undoes it.

Each kind is a small frozen dataclass that carries, side by side, how it is
applied, how it is undone and which paths it may name (:meth:`validate`,
checked before recovery executes a journal, so a tampered one is refused).
One pair of functions turns them into the journal's JSON and back; the JSON
is the same as openkb 0.1 wrote, so its journals are still recovered.

Applying never fsyncs a directory: a step moves many files and then fsyncs
each directory it changed once, in the order the actions report (where a
file went before where it came from), so a power cut can leave a file under
two names, never under none. Undoing is idempotent: recovery may run it
again after a crash in the middle.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from openkb import fsio
from openkb.layout import JOURNAL_WRITABLE_AREAS, KBLayout

_BACKUP = re.compile(r"^b[0-9]{1,9}$")
_STAGING_AREA = (".openkb/staging",)
_ATTIC_AREA = ("attic",)


class BadAction(ValueError):
    """A journal entry that no openkb writes: recovery refuses the journal."""


@dataclass(frozen=True)
class Where:
    """Where one transaction's paths live: the KB and the journal's backup dir."""

    layout: KBLayout
    backup_dir: Path

    def live(self, rel: str, areas: tuple[str, ...] = JOURNAL_WRITABLE_AREAS) -> Path:
        """A journaled path, resolved and confined (never outside ``areas``):
        for undo, which may read a journal a crash left (or someone edited)."""
        return self.layout.resolve(rel, areas=areas)

    def planned(self, rel: str) -> Path:
        """A path this process planned itself, for apply: the plan built it
        from the layout, so it needs no resolving (a realpath per file)."""
        return self.layout.root / rel

    def backup(self, name: str) -> Path:
        return self.backup_dir / name


@dataclass(frozen=True)
class Action:
    """One path a transaction changes. Subclasses name their ``kind``."""

    kind: ClassVar[str]
    target: str  # relative to the KB root

    def validate(self, layout: KBLayout) -> None:
        layout.resolve(self.target, areas=JOURNAL_WRITABLE_AREAS)

    def undo(self, where: Where, *, keep_staged: bool) -> Path:
        """Put the target back as it was; return the directory changed."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The journal's record of this action: its kind and its fields."""
        return {"kind": self.kind, **asdict(self)}

    def paths(self) -> tuple[str, ...]:
        """Every KB-relative path this action names."""
        return (self.target,)


def _check_backup(name: object) -> None:
    if not (isinstance(name, str) and _BACKUP.match(name)):
        raise BadAction(f"bad backup name {name!r}")


@dataclass(frozen=True)
class Stash(Action):
    """Publish or compile step: a live file (a removed document's file, a
    concept page that stops existing) is renamed into the backup dir. O(1),
    and the file itself is the undo record. Durable once the backup dir and
    then the target's dir are fsynced. Undo: rename it back."""

    kind: ClassVar[str] = "stash"
    backup: str

    def validate(self, layout: KBLayout) -> None:
        super().validate(layout)
        _check_backup(self.backup)

    def apply(self, where: Where) -> tuple[Path, Path]:
        """Returns (the dir it went aside to, the target's dir): the step
        fsyncs every dir of the first kind before any of the second."""
        target, backup = where.planned(self.target), where.backup(self.backup)
        fsio.replace(target, backup, sync=False)
        return backup.parent, target.parent

    def undo(self, where: Where, *, keep_staged: bool) -> Path:
        target = where.live(self.target)
        backup = where.backup(self.backup)
        if os.path.lexists(backup):
            fsio.replace(backup, target, sync=False)
        return target.parent


@dataclass(frozen=True)
class Attic(Action):
    """Publish step of `remove --keep-raw`: the original file is renamed
    into ``attic/`` instead of the backup dir. Durable once attic/ and then
    raw/ are fsynced. Undo: rename it back, unless something took its place."""

    kind: ClassVar[str] = "attic"
    attic: str

    def validate(self, layout: KBLayout) -> None:
        super().validate(layout)
        layout.resolve(self.attic, areas=_ATTIC_AREA)

    def paths(self) -> tuple[str, ...]:
        return (self.target, self.attic)

    def apply(self, where: Where) -> tuple[Path, Path]:
        target, attic = where.planned(self.target), where.planned(self.attic)
        fsio.makedirs(attic.parent)
        fsio.replace(target, attic, sync=False)
        return attic.parent, target.parent

    def undo(self, where: Where, *, keep_staged: bool) -> Path:
        target = where.live(self.target)
        attic = where.live(self.attic, _ATTIC_AREA)
        if os.path.lexists(attic) and not os.path.lexists(target):
            fsio.replace(attic, target, sync=False)
        return target.parent


@dataclass(frozen=True)
class Publish(Action):
    """Publish step: a staged file (raw, source, summary) is renamed into
    place. Its data was fsynced by the prepare stage that wrote it, so only
    the new name needs making durable: the target's dir is fsynced.

    The target was absent, or (an update) is freed first by the stash whose
    backup is ``after_stash``; until that stash has run, the target is still
    the old file and undo must leave it. Undo: move the file back to staging
    (so the caller can retry it) or delete it."""

    kind: ClassVar[str] = "publish"
    staged: str
    after_stash: str | None = None

    def validate(self, layout: KBLayout) -> None:
        super().validate(layout)
        layout.resolve(self.staged, areas=_STAGING_AREA)
        if self.after_stash is not None:
            _check_backup(self.after_stash)

    def paths(self) -> tuple[str, ...]:
        return (self.target, self.staged)

    def to_json(self) -> dict[str, Any]:
        record = super().to_json()
        if self.after_stash is None:
            del record["after_stash"]  # as 0.1 wrote it: only for an update
        return record

    def apply(self, where: Where) -> tuple[None, Path]:
        """Returns (nothing went aside, the target's dir), as :meth:`Stash.apply`."""
        target = where.planned(self.target)
        fsio.replace(where.planned(self.staged), target, sync=False)
        return None, target.parent

    def undo(self, where: Where, *, keep_staged: bool) -> Path:
        target = where.live(self.target)
        if self.after_stash and not os.path.lexists(where.backup(self.after_stash)):
            return target.parent  # the old file was never moved aside: it is still there
        if os.path.lexists(target):
            staged = where.live(self.staged, _STAGING_AREA)
            if keep_staged and staged.parent.is_dir() and not os.path.lexists(staged):
                fsio.replace(target, staged, sync=False)
            else:
                fsio.unlink(target, sync=False)
        return target.parent


@dataclass(frozen=True)
class Rewrite(Action):
    """Compile step: a shared page (a concept page, index.md, a summary on
    recompile) is replaced atomically (temp file, fsync, rename, dir fsync).
    ``backup`` names its before-image, hard-linked into the backup dir by
    the snapshot step and fsynced before the rewrite; None if it was absent.
    Undo: restore the image, or delete a page that is new."""

    kind: ClassVar[str] = "rewrite"
    backup: str | None

    def validate(self, layout: KBLayout) -> None:
        super().validate(layout)
        if self.backup is not None:
            _check_backup(self.backup)

    def snapshot(self, where: Where) -> bool:
        """Link the before-image; True if there was one to take."""
        if self.backup is None:
            return False
        fsio.snapshot_file(where.planned(self.target), where.backup(self.backup), sync=False)
        return True

    def undo(self, where: Where, *, keep_staged: bool) -> Path:
        target = where.live(self.target)
        if self.backup is None:
            fsio.unlink(target, sync=False)
        elif os.path.lexists(where.backup(self.backup)):
            fsio.replace(where.backup(self.backup), target, sync=False)
        return target.parent


@dataclass(frozen=True)
class Append(Action):
    """Compile step: lines appended to log.md or to a concept page that
    only gains documents, fsynced (:func:`openkb.fsio_many.append_many`).
    ``size`` is the file's length before. Undo: truncate to it (an append
    a power cut cut short included)."""

    kind: ClassVar[str] = "append"
    size: int

    def validate(self, layout: KBLayout) -> None:
        super().validate(layout)
        if not (isinstance(self.size, int) and not isinstance(self.size, bool)
                and self.size >= 0):
            raise BadAction(f"bad size in {self.to_json()!r}")

    def undo(self, where: Where, *, keep_staged: bool) -> Path:
        target = where.live(self.target)
        if target.exists() and target.stat().st_size > self.size:
            fsio.truncate(target, self.size)
        return target.parent


KINDS: dict[str, type[Action]] = {cls.kind: cls for cls in (Stash, Attic, Publish, Rewrite,
                                                            Append)}


def from_json(record: object, layout: KBLayout) -> Action:
    """Parse and validate one journal record. Raises BadAction or
    :class:`~openkb.errors.UnsafePath` for anything recovery must not execute."""
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        raise BadAction(f"unknown action {record!r}")
    cls = KINDS[record["kind"]]
    fields = {k: v for k, v in record.items() if k != "kind"}
    try:
        action = cls(**fields)
    except TypeError as exc:
        raise BadAction(f"malformed action ({exc})") from exc
    action.validate(layout)
    return action
