"""The LLM stage of `openkb add`: between prepare and commit, on threads.

A call is I/O (the process waits on a socket), so threads are the right
tool: ``llm.concurrency`` calls in flight on a ``ThreadPoolExecutor``, while
the prepare workers go on converting and the committer commits, in scan
order, whatever is ready at the head of the window. A prepared document
counts as ready to commit only once its LLM call is over, so the stage
lives inside the same bounded window as everything else (back-pressure:
the window never admits more files than it holds, whatever the LLM's
latency).

The thread writes the reply into the cache (fsynced) and then the staged
summary page, before its future completes; the commit, which waits on the
future, can only come after. A call that fails leaves the extractive
summary and a pending reason, and the document commits anyway.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Container, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from openkb import fsio, pages
from openkb.llm.summarizer import Outcome, Summarizer
from openkb.model import PreparedDocument
from openkb.progress import Progress

log = logging.getLogger("openkb")


class LlmStage:
    def __init__(self, summarizer: Summarizer, progress: Progress) -> None:
        self.summarizer = summarizer
        self.progress = progress
        self.pool = ThreadPoolExecutor(summarizer.endpoint.settings.concurrency,
                                       thread_name_prefix="openkb-llm")
        # Load the client (the openai package takes a second or two to
        # import) while the first files are converted, not after.
        self.pool.submit(summarizer.client)
        self._futures: dict[int, Future[Outcome]] = {}
        self._reported: set[int] = set()
        self.total = 0
        self.done = 0  # calls over (answered, cached or failed)
        self.pending = 0  # documents committed without their LLM summary
        self._stop_reported = False
        self.failed_sources: set[str] = set()  # source_sha256 of documents whose call failed

    def offer(self, finished: Mapping[int, Any]) -> None:
        """Start a call for each newly prepared document (``finished`` maps
        scan positions to results with a ``result`` attribute)."""
        for seq, done in finished.items():
            if seq in self._futures or not isinstance(done.result, PreparedDocument):
                continue
            self._futures[seq] = self.pool.submit(self._summarize, done.result)
            self.total += 1

    def ready(self, finished: Mapping[int, Any]) -> Container[int]:
        """``finished``, less the documents whose call is not over yet."""
        return _Ready(finished, self._futures)

    def take(self, seq: int) -> None:
        """The window is committing ``seq``: its call is over (see :meth:`ready`)."""
        future = self._futures.pop(seq, None)
        if future is not None and seq not in self._reported:
            self._report(seq, future)
        self._reported.discard(seq)

    def in_flight(self) -> bool:
        return any(not f.done() for f in self._futures.values())

    def wait(self, timeout: float) -> None:
        """Until a call ends, or ``timeout``."""
        running = [f for f in self._futures.values() if not f.done()]
        if running and timeout > 0:
            wait(running, timeout=timeout, return_when=FIRST_COMPLETED)

    def poll(self) -> None:
        """Emit progress for calls that ended (on the main thread: listeners
        are not thread-safe)."""
        for seq, future in list(self._futures.items()):
            if future.done() and seq not in self._reported:
                self._report(seq, future)

    def _report(self, seq: int, future: Future[Outcome]) -> None:
        self._reported.add(seq)
        self.done += 1
        outcome = future.result()
        if outcome.failed:
            self.pending += 1
        stopped = self.summarizer.stopped
        if stopped and not self._stop_reported:
            self._stop_reported = True  # one event; the report says it once to the user
            self.progress.emit("llm_stopped", "point", "llm", error=stopped)
        self.progress.emit("llm", "progress", "llm", **self.counters(),
                           outcome="cached" if outcome.cached else
                           "failed" if outcome.failed else "answered")

    def counters(self) -> dict[str, Any]:
        stats = self.summarizer.stats.as_dict()
        return {"llm": {**stats, "total": self.total, "done": self.done,
                        "cached": self.summarizer.cache_hits, "pending": self.pending}}

    def close(self, *, interrupted: bool) -> None:
        """Done with the stage. ``interrupted``: calls not started are
        dropped, those in flight give up at their next retry (their replies
        so far are in the cache)."""
        if interrupted:
            self.summarizer.cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _summarize(self, doc: PreparedDocument) -> Outcome:
        try:
            source = Path(doc.staged_source).read_text(encoding="utf-8")
            outcome = self.summarizer.summarize(doc.info, source, doc.source_sha256)
            if outcome.info.summary != doc.info.summary:
                # The staged page is replaced whole (old or new, never half);
                # the commit publishes it.
                page = pages.render_summary(doc.name, doc.ext, doc.size,
                                            outcome.info).encode("utf-8")
                fsio.write_atomic(Path(doc.staged_summary), page)
                doc.summary_sha256 = hashlib.sha256(page).hexdigest()
        except Exception as exc:  # an I/O error (the cache's disk), or a bug: this document only
            log.warning("LLM stage failed on %s (%s); it keeps its extractive summary",
                        doc.display, exc)
            reason = f"LLM stage error: {exc}"
            outcome = Outcome(replace(doc.info, summary_pending=reason), failed=reason)
        doc.timings_ms["llm_wait"] = round(outcome.wait_ms, 3)
        if outcome.failed:
            self.failed_sources.add(doc.source_sha256)
        doc.info = outcome.info
        return outcome


class _Ready:
    def __init__(self, finished: Mapping[int, Any], futures: dict[int, Future[Outcome]]) -> None:
        self.finished = finished
        self.futures = futures

    def __contains__(self, seq: object) -> bool:
        if seq not in self.finished:
            return False
        future = self.futures.get(seq)  # type: ignore[arg-type]
        return future is None or future.done()
