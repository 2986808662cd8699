"""LLM summaries for documents already in the KB.

Used by ``recompile`` with the LLM (every document, one recompile
transaction) and by ``add`` with the LLM (the documents an earlier run left
pending, one ``summarize`` transaction). The calls run without the KB lock,
on ``llm.concurrency`` threads, each reply fsynced into the cache as it
arrives; then, under the lock, the new summaries commit as one journaled
transaction. A crash before that commit loses no reply: the next run reads
them from the cache and pays nothing.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace

from openkb.commit import ChangeSet, commit_changes
from openkb.kb import KB, WaitCallback
from openkb.llm.summarizer import Outcome, Summarizer
from openkb.progress import Progress
from openkb.registry import DocumentRow


@dataclass
class RefreshReport:
    asked: int = 0  # documents that wanted a summary
    answered: int = 0  # by a call
    cached: int = 0  # from the cache
    pending: int = 0  # left with their extractive summary, to retry
    stopped: str | None = None  # the endpoint refused every call: why
    txid: str | None = None
    documents: int = 0  # in the KB, after


def refresh_summaries(kb: KB, progress: Progress, summarizer: Summarizer, *,
                      recompile: bool, lock_timeout: float | None = None,
                      on_wait: WaitCallback | None = None,
                      skip: set[str] | None = None) -> RefreshReport:
    """With ``recompile``: summaries for every document, and every page
    re-rendered. Without: only the documents marked pending, but those
    whose source hash is in ``skip`` (they failed moments ago)."""
    registry = kb.reader(progress)
    if recompile:
        rows = registry.documents()
    else:
        rows = [row for name, _ in registry.llm_pending()
                if (row := registry.document(name)) is not None
                and row.source_sha256 not in (skip or ())]
    report = RefreshReport(asked=len(rows))
    outcomes = _summarize_rows(kb, progress, summarizer, rows, report) if rows else {}
    report.stopped = summarizer.stopped
    if not recompile and not outcomes:
        return report
    with kb.exclusive(progress, timeout=lock_timeout, on_wait=on_wait):
        infos = {}
        for name, (source_sha, outcome) in outcomes.items():
            row = kb.registry.document(name)
            if row is None or row.source_sha256 != source_sha:
                continue  # removed or updated meanwhile: its own add summarized it
            info = replace(row.info, summary=outcome.info.summary,
                           summary_pending=outcome.info.summary_pending)
            if info != row.info:
                infos[name] = info
        if recompile or infos:
            committed = commit_changes(
                kb.layout, kb.registry,
                ChangeSet(op="recompile" if recompile else "summarize", recompile=recompile,
                          infos=infos), progress)
            report.txid = committed.txid
        report.documents = kb.registry.count_documents()
    return report


def _summarize_rows(kb: KB, progress: Progress, summarizer: Summarizer,
                    rows: list[DocumentRow], report: RefreshReport
                    ) -> dict[str, tuple[str, Outcome]]:
    pool = ThreadPoolExecutor(summarizer.endpoint.settings.concurrency,
                              thread_name_prefix="openkb-llm")
    outcomes: dict[str, tuple[str, Outcome]] = {}
    try:
        futures: dict[Future[Outcome | None], DocumentRow] = {
            pool.submit(_summarize_row, kb, summarizer, row): row for row in rows}
        for future in as_completed(futures):
            row = futures[future]
            outcome = future.result()
            if outcome is None:
                continue  # its source file does not match: `verify` reports it
            outcomes[row.name] = (row.source_sha256, outcome)
            if outcome.failed:
                report.pending += 1
            elif outcome.cached:
                report.cached += 1
            else:
                report.answered += 1
            progress.emit("llm", "progress", "llm", doc=row.name,
                          llm={**summarizer.stats.as_dict(), "total": len(rows),
                               "done": len(outcomes), "cached": report.cached,
                               "pending": report.pending},
                          outcome="failed" if outcome.failed else
                          "cached" if outcome.cached else "answered")
    except BaseException:
        summarizer.cancel.set()  # Ctrl-C: calls in flight give up at their next retry
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return outcomes


def _summarize_row(kb: KB, summarizer: Summarizer, row: DocumentRow) -> Outcome | None:
    path = kb.layout.root / kb.layout.source_rel(row.name)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != row.source_sha256:
        return None
    return summarizer.summarize(row.info, data.decode("utf-8"), row.source_sha256)
