"""The plain data that flows between scan, prepare and commit.

``prepare`` and ``commit`` meet only at :class:`PreparedDocument`: prepare
fills one in a staging dir (possibly in another process, so everything here
pickles), commit publishes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Document kinds, by converter.
KINDS = ("markdown", "text", "html", "pdf")


@dataclass(frozen=True, slots=True)
class ScanEntry:
    """One regular file found under an input path, in scan order."""

    seq: int
    path: str  # absolute path of the input file
    display: str  # path as the user would recognise it (relative to the input root)
    size: int
    mtime_ns: int
    # The rest of the stat fingerprint the stat cache compares (0: unknown).
    dev: int = 0
    ino: int = 0
    ctime_ns: int = 0


@dataclass(frozen=True, slots=True)
class Skipped:
    """An input that was deliberately not ingested (not an error)."""

    display: str
    reason: str  # one of SKIP_REASONS
    detail: str = ""


SKIP_REASONS = {
    "duplicate": "content already in the KB",
    "duplicate-in-run": "same content as another file in this run",
    "unsupported": "not a supported document type",
    "special": "not a regular file (FIFO, socket or device)",
    "symlink": "symlink not followed",
    "hidden": "hidden file",
    "unchanged": "unchanged since it was last read (stat cache)",
    "failed-before": "failed before and unchanged since (`openkb failures` lists them)",
}


@dataclass(frozen=True, slots=True)
class PrepareTask:
    """What a worker needs to prepare one file, fully decided by the main process."""

    seq: int
    path: str
    display: str
    sha256: str
    size: int
    name: str  # doc name reserved in scan order
    kind: str
    ext: str  # lower-case extension with the dot, as stored under raw/
    # Absolute path prefix of this task's staged files, private to it:
    # ``<prefix>.raw<ext>``, ``<prefix>.source.md``, ``<prefix>.summary.md``
    # side by side in the run's staging dir (a dir per file cost an rmdir
    # per commit: 1.3 ms each on this project's disk, in the main process).
    staging_prefix: str
    replaces: str | None = None  # name of the doc this one updates (same origin)
    # A long PDF is read in parts, each by its own worker: ``part`` = (i, n)
    # asks for the text of pages i, i + n, i + 2n, ...; ``pages`` carries the
    # text of every page back to the task that prepares the whole document.
    part: tuple[int, int] | None = None
    pages: PageTexts | None = None


@dataclass(frozen=True, slots=True)
class PageTexts:
    """The text of some pages of one PDF, by page index; a page pypdf could
    not read counts in ``unreadable`` and has no entry."""

    seq: int
    count: int  # pages in the whole PDF
    texts: dict[int, str]
    unreadable: int = 0
    image_pages: int = 0  # pages with images but no text (scanned?)


@dataclass(frozen=True, slots=True)
class Chunk:
    ord: int
    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class OutlineEntry:
    level: int
    title: str
    page: int | None = None


@dataclass(slots=True)
class DocumentInfo:
    """Everything compile needs about a document; stored as JSON in the registry,
    so summary pages can be re-rendered without re-converting the original."""

    title: str
    kind: str
    outline: list[OutlineEntry] = field(default_factory=list)
    lead: str = ""
    terms: list[str] = field(default_factory=list)
    pages: int | None = None
    words: int = 0
    chars: int = 0
    # Written by an LLM (openkb.llm); when empty, the page shows ``lead``.
    summary: str = ""
    # Why an LLM summary was asked for and not obtained; retried by the next
    # command that asks for LLM summaries (see openkb.llm.refresh).
    summary_pending: str = ""


@dataclass(slots=True)
class PreparedDocument:
    """A document converted into its staging dir, ready to commit.

    ``staged_*`` are absolute paths inside the task's staging dir; commit
    moves them into the live tree with ``os.replace``.
    """

    seq: int
    name: str
    display: str
    origin: str  # absolute path of the input file
    sha256: str
    size: int
    ext: str
    info: DocumentInfo
    chunks: list[Chunk]
    staged_raw: str
    staged_source: str
    staged_summary: str
    source_sha256: str
    summary_sha256: str
    replaces: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def staged_paths(self) -> tuple[str, str, str]:
        return self.staged_raw, self.staged_source, self.staged_summary


# The scan position of a failure found while scanning: the file never got one.
NO_SEQ = -1


@dataclass(frozen=True, slots=True)
class FileFailure:
    """One input that could not be ingested, with a reason a user can act on."""

    seq: int  # scan position, or NO_SEQ
    display: str
    reason: str
