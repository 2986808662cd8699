"""Prepare one file into its staging dir: the stage functions a worker runs.

Each stage is a small named function, so the in-process path (``--jobs 1``)
and the worker processes run exactly the same code. Nothing here touches a
live KB path: everything is written beside ``task.staging_prefix``, fsynced, so
that publishing is a rename.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from openkb import fsio, fsio_many, pages
from openkb.config import Config
from openkb.errors import FileRejected
from openkb.model import Chunk, DocumentInfo, PageTexts, PreparedDocument, PrepareTask
from openkb.prepare.analyze import count_words, lead_paragraph
from openkb.prepare.chunk import chunk_markdown
from openkb.prepare.convert_html import convert_html
from openkb.prepare.convert_text import convert_text
from openkb.prepare.converted import Converted
from openkb.prepare.decode import decode_text
from openkb.prepare.sniff import detect_kind
from openkb.prepare.terms import key_terms

MAX_TERM_CHARS = 100
_TERM_JUNK = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class PrepareLimits:
    max_file_bytes: int
    chunk_chars: int
    key_terms: int
    pdf_engine: str = "pdfium"  # see openkb.prepare.pdf_text

    @classmethod
    def from_config(cls, config: Config) -> PrepareLimits:
        return cls(max_file_bytes=config.max_file_mb * 1048576, chunk_chars=config.chunk_chars,
                   key_terms=config.key_terms_per_doc, pdf_engine=config.pdf_engine)


def read_input(task: PrepareTask, limits: PrepareLimits) -> bytes:
    """The file's bytes, if they are still what the scan hashed.

    Opened non-blocking and checked with fstat, so a file swapped for a FIFO
    after the scan cannot hang the worker.
    """
    try:
        fd = os.open(task.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileRejected("vanished after it was scanned") from None
    except OSError as exc:
        raise FileRejected(f"cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FileRejected("no longer a regular file")
        if st.st_size > limits.max_file_bytes:
            raise FileRejected(
                f"too large: {st.st_size / 1048576:.1f} MiB (limit max_file_mb = "
                f"{limits.max_file_bytes // 1048576})"
            )
        # read(n) allocates n bytes up front: ask for the size fstat gave
        # (plus one, to notice a file still growing), not for the limit.
        data = handle.read(st.st_size + 1)
    if len(data) > st.st_size:
        raise FileRejected("changed while being read; run the add again")
    if hashlib.sha256(data).hexdigest() != task.sha256:
        raise FileRejected("changed after it was scanned; run the add again")
    if not data:
        raise FileRejected("empty file (0 bytes)")
    return data


def convert(kind: str, data: bytes, pages: PageTexts | None = None, *,
            pdf_engine: str = "pdfium") -> Converted:
    # The PDF and Markdown converters (pypdf, PDFium, markdown-it: a third
    # of a second) load on first use: a sync with nothing new to convert
    # imports this module and never converts.
    if kind == "pdf":
        from openkb.prepare.convert_pdf import convert_pdf

        return convert_pdf(data, pages, engine=pdf_engine)
    text = decode_text(data)
    if not text.strip():
        raise FileRejected("no text (only whitespace)")
    if kind == "markdown":
        from openkb.prepare.convert_markdown import convert_markdown

        return convert_markdown(text)
    if kind == "html":
        return convert_html(text)
    return convert_text(text)


def title_from_name(display: str) -> str:
    stem = Path(display).stem
    return " ".join(re.sub(r"[_\-]+", " ", stem).split()) or stem


def clean_terms(terms: list[str]) -> list[str]:
    """Terms become page names: only word characters other than ``_``,
    single spaces, bounded length, no duplicates."""
    seen: dict[str, None] = {}
    for term in terms:
        clean = " ".join(_TERM_JUNK.sub(" ", term.lower()).split())[:MAX_TERM_CHARS].strip()
        if clean:
            seen.setdefault(clean, None)
    return list(seen)


def analyze(converted: Converted, display: str, kind: str, limits: PrepareLimits) -> DocumentInfo:
    title = pages.one_line(converted.title or "") or title_from_name(display)
    markdown = converted.markdown
    if not markdown.strip():
        raise FileRejected("no text after conversion")
    return DocumentInfo(
        title=title,
        kind=kind,
        outline=converted.outline,
        lead=lead_paragraph(markdown),
        terms=clean_terms(key_terms(markdown, title, limits.key_terms)),
        pages=converted.pages,
        words=count_words(markdown),
        chars=len(markdown),
    )


def write_staging(task: PrepareTask, data: bytes, source: bytes,
                  summary: bytes) -> tuple[str, str, str]:
    """The three files publish renames into place, their data fsynced
    together (one journal commit, not three).

    No directory here is fsynced: until publish, staging is disposable (a
    crash before the commit point discards it, and recovery sweeps what is
    left), and publish fsyncs each target directory after its renames, which
    is what makes the new names durable. What must be durable before a
    rename is the data, and it is. On the RFCs this was five serial fsyncs
    per document, more of a worker's time than converting the document."""
    prefix = task.staging_prefix
    fsio.makedirs(Path(prefix).parent, sync=False)
    paths = (Path(f"{prefix}.raw{task.ext}"), Path(f"{prefix}.source.md"),
             Path(f"{prefix}.summary.md"))
    fsio_many.create_many(list(zip(paths, (data, source, summary), strict=True)))
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def run_task(task: PrepareTask, limits: PrepareLimits) -> PreparedDocument | PageTexts:
    """What a worker (or ``--jobs 1``) does with a task: read part of a long
    PDF, or prepare a whole file. Raises FileRejected with a reason."""
    io_wait_ms = os.environ.get("OPENKB_PREPARE_SLEEP_MS")
    if io_wait_ms:
        # Test hook: a stand-in for an I/O-bound stage (an LLM call), so
        # the bench can compare executors where threads are the right one.
        time.sleep(float(io_wait_ms) / 1000)
    if task.part is None:
        return prepare_file(task, limits)
    data = read_input(task, limits)
    detect_kind(task.path, data[:4096])  # a .pdf that is not one is rejected as usual
    from openkb.prepare.convert_pdf import extract_pages

    return extract_pages(data, task.seq, *task.part, engine=limits.pdf_engine)


@dataclass
class Built:
    """A prepared document before it is staged: everything a worker computes
    from the file's bytes. A Dask worker returns this (as bytes) and the
    committing process stages it, so workers never need the KB's disk."""

    data: bytes
    source: bytes
    summary: bytes
    info: DocumentInfo
    chunks: list[Chunk]
    timings_ms: dict[str, float]


def build_document(task: PrepareTask, limits: PrepareLimits, data: bytes) -> Built:
    """Convert, analyze and render one file's bytes. Raises FileRejected."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round((now - clock) * 1000, 3)
        clock = now

    kind, _ = detect_kind(task.path, data[:4096])
    converted = convert(kind, data, task.pages, pdf_engine=limits.pdf_engine)
    lap("convert")
    info = analyze(converted, task.display, kind, limits)
    chunks = chunk_markdown(converted.markdown, limits.chunk_chars, converted.heading_lines)
    source = converted.markdown if converted.markdown.endswith("\n") else converted.markdown + "\n"
    source_bytes = source.encode("utf-8")
    summary_bytes = pages.render_summary(task.name, task.ext, len(data), info).encode("utf-8")
    lap("analyze")
    return Built(data, source_bytes, summary_bytes, info, chunks, timings)


def stage_built(task: PrepareTask, built: Built) -> PreparedDocument:
    """Write a built document beside ``task.staging_prefix``: the prepared
    document the commit publishes."""
    clock = time.perf_counter()
    staged_raw, staged_source, staged_summary = write_staging(task, built.data, built.source,
                                                              built.summary)
    timings = {**built.timings_ms, "stage_write": round((time.perf_counter() - clock) * 1000, 3)}
    return PreparedDocument(
        seq=task.seq,
        name=task.name,
        display=task.display,
        origin=task.path,
        sha256=task.sha256,
        size=len(built.data),
        ext=task.ext,
        info=built.info,
        chunks=built.chunks,
        staged_raw=staged_raw,
        staged_source=staged_source,
        staged_summary=staged_summary,
        source_sha256=hashlib.sha256(built.source).hexdigest(),
        summary_sha256=hashlib.sha256(built.summary).hexdigest(),
        replaces=task.replaces,
        timings_ms=timings,
    )


def prepare_file(task: PrepareTask, limits: PrepareLimits) -> PreparedDocument:
    """Run every stage for one file. Raises FileRejected with a reason."""
    start = time.perf_counter()
    data = read_input(task, limits)
    read_ms = round((time.perf_counter() - start) * 1000, 3)
    built = build_document(task, limits, data)
    built.timings_ms = {"read": read_ms, **built.timings_ms}
    return stage_built(task, built)


def rename_prepared(doc: PreparedDocument, new_name: str) -> PreparedDocument:
    """Give a prepared document another name (its reserved one was taken by a
    concurrent add): only the summary page mentions the name."""
    summary = pages.render_summary(new_name, doc.ext, doc.size, doc.info).encode("utf-8")
    path = Path(doc.staged_summary)
    fsio.write_atomic(path, summary)
    doc.name = new_name
    doc.summary_sha256 = hashlib.sha256(summary).hexdigest()
    return doc
