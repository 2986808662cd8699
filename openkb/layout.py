"""Where everything lives inside a KB, and the one check that keeps writes inside it.

Every path the commit path touches is built here or validated here by
:meth:`KBLayout.resolve`, which refuses anything that would land outside the
KB root: absolute paths, ``..`` components, and symlinks that lead out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from openkb.errors import UnsafePath

META_DIR = ".openkb"

# Top-level areas a journal may name. Anything else in a journal is refused.
JOURNAL_WRITABLE_AREAS = ("raw", "wiki", "attic", f"{META_DIR}/journal", f"{META_DIR}/staging")


@dataclass(frozen=True)
class KBLayout:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> KBLayout:
        return cls(Path(os.path.abspath(root)))

    # -- user-visible tree -------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def wiki_dir(self) -> Path:
        return self.root / "wiki"

    @property
    def sources_dir(self) -> Path:
        return self.wiki_dir / "sources"

    @property
    def summaries_dir(self) -> Path:
        return self.wiki_dir / "summaries"

    @property
    def concepts_dir(self) -> Path:
        return self.wiki_dir / "concepts"

    @property
    def index_md(self) -> Path:
        return self.wiki_dir / "index.md"

    @property
    def log_md(self) -> Path:
        return self.wiki_dir / "log.md"

    @property
    def attic_dir(self) -> Path:
        """Where `remove --keep-raw` moves original files."""
        return self.root / "attic"

    # -- private state -----------------------------------------------------
    @property
    def meta_dir(self) -> Path:
        return self.root / META_DIR

    @property
    def config_path(self) -> Path:
        return self.meta_dir / "config.yaml"

    @property
    def db_path(self) -> Path:
        return self.meta_dir / "kb.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.meta_dir / "lock"

    @property
    def lock_holder_path(self) -> Path:
        return self.meta_dir / "lock.holder.json"

    @property
    def reserve_path(self) -> Path:
        """Preallocated space a removal may free on a full disk (openkb.diskspace)."""
        return self.meta_dir / "reserve"

    @property
    def journal_dir(self) -> Path:
        return self.meta_dir / "journal"

    @property
    def staging_dir(self) -> Path:
        return self.meta_dir / "staging"

    @property
    def runs_dir(self) -> Path:
        """One record per running ingest, read by `openkb status`."""
        return self.meta_dir / "runs"

    @property
    def quarantine_dir(self) -> Path:
        """Where `verify --repair` moves orphaned files instead of deleting them."""
        return self.meta_dir / "quarantine"

    @property
    def llm_cache_dir(self) -> Path:
        """LLM replies, one fsynced file each (see openkb.llm.cache)."""
        return self.meta_dir / "llm-cache"

    def is_kb(self) -> bool:
        return self.db_path.is_file()

    # -- per-document paths (relative, POSIX, as stored in journals) --------
    @staticmethod
    def raw_rel(name: str, ext: str) -> str:
        return f"raw/{name}{ext}"

    @staticmethod
    def source_rel(name: str) -> str:
        return f"wiki/sources/{name}.md"

    @staticmethod
    def summary_rel(name: str) -> str:
        return f"wiki/summaries/{name}.md"

    @staticmethod
    def concept_rel(slug: str) -> str:
        return f"wiki/concepts/{slug}.md"

    INDEX_REL = "wiki/index.md"
    LOG_REL = "wiki/log.md"

    # -- containment -------------------------------------------------------
    def managed_paths(self) -> tuple[Path, ...]:
        """The directories and shared files openkb writes into or through."""
        return (self.raw_dir, self.attic_dir, self.wiki_dir, self.sources_dir,
                self.summaries_dir, self.concepts_dir, self.index_md, self.log_md,
                self.meta_dir, self.journal_dir, self.staging_dir, self.runs_dir,
                self.quarantine_dir, self.llm_cache_dir)

    def check_no_symlinks(self) -> None:
        """Raise UnsafePath if a managed path is a symlink.

        Checked once per lock acquisition, before anything is written, rather
        than on every write: a relocated ``raw/`` or a linked ``wiki/log.md``
        would otherwise have every step (publish, append, sweep, quarantine)
        write or delete through it, outside the KB.
        """
        for path in self.managed_paths():
            if path.is_symlink():
                raise UnsafePath(
                    f"{self.rel(path)} in the KB {self.root} is a symlink (to "
                    f"{os.readlink(path)}); openkb writes only inside the KB and will not "
                    "write through it",
                    hint=f"replace the link with the real {'file' if path.suffix else 'folder'} "
                         f"(remove the link, then move its target to {path}) and run the "
                         "command again",
                )

    def rel(self, path: Path) -> str:
        return PurePosixPath(os.path.relpath(path, self.root)).as_posix()

    def resolve(self, rel: str, *, areas: tuple[str, ...] | None = None) -> Path:
        """Turn a KB-relative path into an absolute one, or raise UnsafePath.

        ``areas`` limits the top-level directories the path may live in.
        The final component may not exist yet; its parent must resolve
        (through any symlinks) to a directory inside the root.
        """
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise UnsafePath(f"refusing empty or malformed path {rel!r}")
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or rel != pure.as_posix():
            raise UnsafePath(f"refusing path {rel!r}: it leads outside the KB")
        if areas is not None and not any(
            rel == area or rel.startswith(area + "/") for area in areas
        ):
            raise UnsafePath(f"refusing path {rel!r}: outside the areas openkb writes")
        candidate = self.root.joinpath(*pure.parts)
        real_root = os.path.realpath(self.root)
        real_parent = os.path.realpath(candidate.parent)
        if real_parent != real_root and not real_parent.startswith(real_root + os.sep):
            raise UnsafePath(f"refusing path {rel!r}: it resolves outside the KB at {real_parent}")
        if candidate.is_symlink():
            raise UnsafePath(f"refusing path {rel!r}: it is a symlink")
        return candidate
