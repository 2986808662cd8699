"""`openkb add`: scan, prefilter, prepare in parallel, commit in scan order.

The pipeline keeps at most ``jobs + prepare_buffer`` files submitted but not
committed (back-pressure: memory stays flat however many files there are).
Commits happen on this process, under the lock, in scan order, as soon as
the next file in order is prepared, while workers go on with later files.

- :mod:`~openkb.ingest.run`: the run and its loop;
- :mod:`~openkb.ingest.window`: what is admitted and not yet committed, and
  when its head is worth a commit;
- :mod:`~openkb.ingest.dispatch`: tasks to workers, results back;
- :mod:`~openkb.ingest.committer`: groups into transactions;
- :mod:`~openkb.ingest.report`: each file's outcome, tallied once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openkb.ingest.report import AddReport, CancelToken, Counts

if TYPE_CHECKING:
    from openkb.kb import KB, WaitCallback
    from openkb.llm.summarizer import Summarizer
    from openkb.progress import Progress

__all__ = ["AddReport", "CancelToken", "Counts", "add_paths"]


def add_paths(kb: KB, inputs: list[str], progress: Progress, *, jobs: int | None = None,
              cancel: CancelToken | None = None, lock_timeout: float | None = None,
              on_lock_wait: WaitCallback | None = None,
              summarizer: Summarizer | None = None, rehash: bool = False) -> AddReport:
    # Imported here: the run imports the converters (pypdf, markdown-it),
    # which commands that only read or report must not pay for.
    from openkb.ingest.run import AddRun

    run = AddRun(kb, progress, jobs or kb.config.jobs, cancel or CancelToken(), lock_timeout,
                 on_lock_wait, summarizer, rehash=rehash)
    return run.execute(inputs)
