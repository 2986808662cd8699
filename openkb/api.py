"""The library API: one function per command, returning plain results.

The CLI (``openkb.cli``) parses options, calls one of these, and renders what
comes back; nothing here prints. Every function that changes the KB takes
the exclusive lock (and so first finishes whatever a crash left behind), and
runs inside :meth:`Progress.run`, so its events end with one terminal event
saying how it ended (``add`` does so in :mod:`openkb.ingest`).

This module is also the CLI's only door into the library: it re-exports the
errors and exit codes, the result types, the event stream and its
listeners, and the constants a front end renders (see ``__all__``).
Importing it stays cheap, so read-only commands start fast: what brings the
converters (pypdf, markdown-it) is imported by the one command that needs
it, and ``AddReport`` and ``CancelToken`` load with it, on first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from openkb.errors import (
    EXIT_INTERRUPTED,
    EXIT_LOCK_TIMEOUT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    CommitFailed,
    ConfigError,
    IndexUnreadable,
    Interrupted,
    JournalRefused,
    LockTimeout,
    NotAKnowledgeBase,
    OpenKBError,
    RecoveryFailed,
    UnknownDocument,
    UnsafePath,
    UsageError,
    VerifyFailed,
    WrittenByNewerOpenKB,
    exit_code_for,
    exit_code_of_run,
)
from openkb.kb import KB, WaitCallback, init_kb
from openkb.lock import Holder, read_holder
from openkb.model import SKIP_REASONS, FileFailure, Skipped
from openkb.pending import RecoveryReport, pending_journal_paths
from openkb.progress import COMMIT_STEPS, TERMINAL_EVENTS, Listener, Progress, RunOutcome
from openkb.progress_jsonl import JsonlWriter
from openkb.registry import (
    HIT_END,
    HIT_START,
    DocumentRow,
    FailureRow,
    SearchHit,
    TransactionRow,
)
from openkb.runs import RunRecord, live_runs

if TYPE_CHECKING:  # and loaded, on first use, by __getattr__ below
    from openkb.crashpoints import CRASHPOINTS
    from openkb.diskspace import OutOfSpace
    from openkb.ingest import AddReport, CancelToken
    from openkb.llm.refresh import RefreshReport
    from openkb.llm.summarizer import Summarizer
    from openkb.progress_summary import RunSummary, summarize, write_chrome_trace
    from openkb.sync import SyncReport
    from openkb.sync.commands import failures, sync, watch
    from openkb.sync.watch import WatchBatch, WatchReport
    from openkb.verify import Problem, VerifyReport

__all__ = [  # noqa: RUF022 - grouped by what a front end uses them for
    # commands
    "add", "failures", "init", "list_documents", "recompile", "recover", "remove", "search", "show",
    "status", "summarize", "sync", "tree_hash", "verify", "watch", "write_chrome_trace",
    # what they return
    "AddReport", "DocumentRow", "FailureRow", "FileFailure", "Holder", "InitResult", "Problem",
    "OutOfSpace", "RecompileReport", "RecoveryReport", "RemoveReport", "RunRecord", "RunSummary",
    "SearchHit", "ShowResult", "Skipped", "StatusReport", "SyncReport", "VerifyReport",
    "WatchBatch", "WatchReport",
    # what they take
    "CancelToken", "JsonlWriter", "Listener", "Progress", "WaitCallback",
    # errors and exit codes
    "EXIT_INTERRUPTED", "EXIT_LOCK_TIMEOUT", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE",
    "CommitFailed", "ConfigError", "IndexUnreadable", "Interrupted", "JournalRefused",
    "LockTimeout", "NotAKnowledgeBase", "OpenKBError", "RecoveryFailed", "UnknownDocument",
    "UnsafePath", "UsageError", "VerifyFailed", "WrittenByNewerOpenKB", "exit_code_for",
    "exit_code_of_run",
    # constants a front end renders
    "COMMIT_STEPS", "CRASHPOINTS", "HIT_END", "HIT_START", "SKIP_REASONS", "TERMINAL_EVENTS",
]

# Loaded on first use, so that a command pays only for what it runs: `search`
# must not import the commit path, the verifier or the converters.
_LAZY = {
    "AddReport": "openkb.ingest", "CancelToken": "openkb.ingest",
    "Problem": "openkb.verify", "VerifyReport": "openkb.verify",
    "RunSummary": "openkb.progress_summary", "summarize": "openkb.progress_summary",
    "write_chrome_trace": "openkb.progress_summary",
    "CRASHPOINTS": "openkb.crashpoints",
    "SyncReport": "openkb.sync", "OutOfSpace": "openkb.diskspace",
    "WatchBatch": "openkb.sync.watch", "WatchReport": "openkb.sync.watch",
    # keeping a KB in step with folders: openkb/sync/commands.py
    "sync": "openkb.sync.commands", "watch": "openkb.sync.commands",
    "failures": "openkb.sync.commands",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)



@contextmanager
def _changing(kb_dir: str | None, command: str,
              progress: Progress) -> Iterator[tuple[KB, RunOutcome]]:
    """The KB, opened for a command that may change it, and the outcome its
    terminal event reports: without that event, a reader of the stream
    cannot tell a finished command from a killed one."""
    with KB.open(kb_dir, command) as kb, progress.run(command) as outcome:
        yield kb, outcome


@dataclass
class InitResult:
    root: Path
    created: bool


def init(path: str) -> InitResult:
    layout, created = init_kb(path)
    return InitResult(layout.root, created)


def add(kb_dir: str | None, paths: list[str], progress: Progress, *, jobs: int | None = None,
        cancel: CancelToken | None = None, lock_timeout: float | None = None,
        on_lock_wait: WaitCallback | None = None, llm: bool = False,
        llm_model: str | None = None, rehash: bool = False,
        retry_failed: bool = False, executor: str | None = None,
        scheduler: str | None = None) -> AddReport:
    """``llm``: summaries written by the configured endpoint (openkb.llm).
    ``executor``: process, thread or dask (see :mod:`openkb.executors`);
    ``scheduler``: a Dask scheduler's address (implies dask)."""
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1", argument="jobs")
    from openkb.sync import add_paths  # with the failure ledger

    with KB.open(kb_dir, "openkb add") as kb:
        summarizer = _summarizer(kb, llm_model) if llm else None
        try:
            return add_paths(kb, paths, progress, jobs=jobs, cancel=cancel,
                             lock_timeout=lock_timeout, on_lock_wait=on_lock_wait,
                             summarizer=summarizer, rehash=rehash,
                             retry_failed=retry_failed, executor=executor,
                             scheduler=scheduler)
        finally:
            if summarizer is not None:
                summarizer.close()


def _summarizer(kb: KB, model: str | None) -> Summarizer:
    """The LLM endpoint and reply cache, or a UsageError naming what to set.
    Imported here: commands without the LLM never load it."""
    from openkb.llm.cache import ReplyCache
    from openkb.llm.settings import resolve_endpoint
    from openkb.llm.summarizer import Summarizer

    return Summarizer(resolve_endpoint(kb.config.llm, model), ReplyCache(kb.layout.llm_cache_dir))


@dataclass
class RemoveReport:
    removed: list[DocumentRow]
    dry_run: bool
    kept_raw: bool
    txid: str | None = None
    recovery: RecoveryReport = field(default_factory=RecoveryReport)


def remove(kb_dir: str | None, docs: list[str], progress: Progress, *, dry_run: bool = False,
           keep_raw: bool = False, lock_timeout: float | None = None,
           on_lock_wait: WaitCallback | None = None) -> RemoveReport:
    """Remove documents in one transaction: all of them, or (on any error) none."""
    if not docs:
        raise UsageError("name at least one document to remove")
    with _changing(kb_dir, "openkb remove", progress) as (kb, outcome), \
            kb.exclusive(progress, timeout=lock_timeout, on_wait=on_lock_wait,
                         release_reserve=not dry_run):
        rows = []
        for name in dict.fromkeys(docs):
            row = kb.registry.document(name)
            if row is None:
                raise UnknownDocument(f"no document named {name!r}; nothing was removed",
                                      hint="`openkb list` shows the names")
            rows.append(row)
        report = RemoveReport(rows, dry_run, keep_raw, recovery=kb.recovery)
        if not dry_run:
            from openkb.commit import ChangeSet, Removal, commit_changes

            committed = commit_changes(
                kb.layout, kb.registry,
                ChangeSet(op="remove", removed=[Removal(r.name, keep_raw) for r in rows]),
                progress)
            kb.reserve.ensure(headroom=1)  # released for this removal? taken back now
            report.txid = committed.txid
        outcome.fields.update(removed=len(rows), dry_run=dry_run, txid=report.txid)
        return report


def list_documents(kb_dir: str | None, progress: Progress) -> list[DocumentRow]:
    with KB.open(kb_dir, "openkb list") as kb:
        return kb.reader(progress).documents()


@dataclass
class StatusReport:
    root: Path
    documents: int
    concepts: int
    total_bytes: int
    pending_journals: int
    refused_journals: list[str]  # why each journal no command will finish is refused
    lock_holder: Holder | None
    running: list[RunRecord]
    last_change: str | None
    failures: int = 0  # files in the failure ledger (`openkb failures`)
    llm_pending: int = 0  # documents whose LLM summary is owed (a call failed)


def status(kb_dir: str | None, progress: Progress) -> StatusReport:
    with KB.open(kb_dir, "openkb status") as kb:
        registry = kb.reader(progress)
        # Imported here: only a crashed KB has journals to describe.
        from openkb.recovery import describe_journal

        pending = [describe_journal(kb.layout, registry, path)
                   for path in pending_journal_paths(kb.layout)]
        last = registry.last_transaction()
        return StatusReport(
            root=kb.layout.root,
            documents=registry.count_documents(),
            concepts=len(registry.concepts()),
            total_bytes=registry.total_bytes(),
            pending_journals=len(pending),
            refused_journals=[j.message for j in pending if j.refused],
            lock_holder=read_holder(kb.layout),
            running=live_runs(kb.layout),
            last_change=_describe_transaction(last) if last else None,
            failures=registry.count_failures(),
            llm_pending=len(registry.llm_pending()),
        )


def _describe_transaction(tx: TransactionRow) -> str:
    """``<committed_at> <op> <docs as JSON>``: what `openkb status` calls the last change."""
    return f"{tx.committed_at} {tx.op} {orjson.dumps(tx.docs).decode()}"


_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must appear (any order).
    Words are quoted, so FTS5 operators in the input are just words."""
    words = _WORD.findall(text)
    if not words:
        raise UsageError(f"nothing to search for in {text!r}", hint="give one or more words")
    return " ".join(f'"{w}"' for w in words)


def search(kb_dir: str | None, query: str, progress: Progress, *,
           limit: int = 10) -> list[SearchHit]:
    if limit < 1:
        raise UsageError("limit must be at least 1", argument="limit")
    with KB.open(kb_dir, "openkb search") as kb:
        return kb.reader(progress).search(fts_query(query), limit)


@dataclass
class ShowResult:
    row: DocumentRow
    summary_path: Path
    source_path: Path
    raw_path: Path
    summary: str


def show(kb_dir: str | None, doc: str, progress: Progress) -> ShowResult:
    with KB.open(kb_dir, "openkb show") as kb:
        registry = kb.reader(progress)
        row = registry.document(doc)
        if row is None:
            raise UnknownDocument(f"no document named {doc!r}",
                                  hint="`openkb list` shows the names; `openkb search` finds them")
        layout = kb.layout
        summary_path = layout.root / layout.summary_rel(row.name)
        return ShowResult(row, summary_path, layout.root / layout.source_rel(row.name),
                          layout.root / layout.raw_rel(row.name, row.ext),
                          summary_path.read_text(encoding="utf-8"))


@dataclass
class RecompileReport:
    txid: str
    documents: int
    llm: RefreshReport | None = None  # with the LLM: what it did


def recompile(kb_dir: str | None, progress: Progress, *, lock_timeout: float | None = None,
              on_lock_wait: WaitCallback | None = None, llm: bool = False,
              llm_model: str | None = None) -> RecompileReport:
    """Re-render every summary, concept page and index.md from the registry,
    as one transaction; with ``llm``, every summary section is (re)written by
    the LLM first (from the reply cache where it can be)."""
    if llm:
        return _recompile_with_llm(kb_dir, progress, lock_timeout, on_lock_wait, llm_model)
    with _changing(kb_dir, "openkb recompile", progress) as (kb, outcome), \
            kb.exclusive(progress, timeout=lock_timeout, on_wait=on_lock_wait):
        from openkb.commit import ChangeSet, commit_changes

        committed = commit_changes(kb.layout, kb.registry,
                                   ChangeSet(op="recompile", recompile=True), progress)
        report = RecompileReport(committed.txid, kb.registry.count_documents())
        outcome.fields.update(documents=report.documents, txid=report.txid)
        return report


def _recompile_with_llm(kb_dir: str | None, progress: Progress, lock_timeout: float | None,
                        on_lock_wait: WaitCallback | None,
                        llm_model: str | None) -> RecompileReport:
    from openkb.llm.refresh import refresh_summaries

    with _changing(kb_dir, "openkb recompile", progress) as (kb, outcome):
        summarizer = _summarizer(kb, llm_model)
        try:
            done = refresh_summaries(kb, progress, summarizer, recompile=True,
                                     lock_timeout=lock_timeout, on_wait=on_lock_wait)
        finally:
            summarizer.close()
        report = RecompileReport(done.txid or "", done.documents, llm=done)
        outcome.fields.update(documents=report.documents, txid=report.txid,
                              llm_answered=done.answered, llm_cached=done.cached,
                              llm_pending=done.pending)
        return report


def recover(kb_dir: str | None, progress: Progress, *, lock_timeout: float | None = None,
            on_lock_wait: WaitCallback | None = None) -> RecoveryReport:
    with _changing(kb_dir, "openkb recover", progress) as (kb, outcome), \
            kb.exclusive(progress, timeout=lock_timeout, on_wait=on_lock_wait):
        report = kb.recovery
        outcome.fields.update(rolled_back=len(report.rolled_back),
                              rolled_forward=len(report.rolled_forward),
                              discarded=len(report.discarded), swept=len(report.swept))
        return report


def verify(kb_dir: str | None, progress: Progress, *, repair: bool = False,
           lock_timeout: float | None = None,
           on_lock_wait: WaitCallback | None = None) -> VerifyReport:
    """Check every invariant; with ``repair``, fix what the KB's own data can."""
    from openkb.verify import verify_kb

    # Without repair, verify looks at the KB as the last command left it:
    # it takes the lock (so no commit runs under it) but recovers nothing,
    # and reports pending journals as problems.
    with _changing(kb_dir, "openkb verify", progress) as (kb, outcome), \
            kb.exclusive(progress, timeout=lock_timeout, on_wait=on_lock_wait, recover=repair):
        report = verify_kb(kb.layout, kb.registry, progress, repair=repair)
        # The exit code the CLI will use.
        outcome.exit_code = exit_code_of_run(failed=not report.ok)
        outcome.fields.update(repair=repair, ok=report.ok, problems=len(report.problems),
                              repaired=sum(p.repaired for p in report.problems))
        return report


def tree_hash(kb_dir: str | None, progress: Progress) -> str:
    from openkb.treehash import tree_hash as _tree_hash

    with KB.open(kb_dir, "openkb debug tree-hash") as kb:
        return _tree_hash(kb.layout, kb.reader(progress))

