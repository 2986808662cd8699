"""A long PDF read by several workers at once.

Commits go in scan order, so one long PDF holds back every file after it
until it is converted, and on two cores one 117-page PDF was most of the
run's conversion time: jobs > 1 could not beat jobs = 1 by much. pypdf's
cost is per page (parsing content streams), so a PDF of at least
:data:`SPLIT_MIN_BYTES` is split into one part per worker, each reading
every n-th page (a stride balances long and short pages better than
ranges), and a last task prepares the whole document from their texts as
it would have from its own: the result is the same document, byte for byte.

All of this happens in the main process's bookkeeping; the workers only see
ordinary tasks, and nothing here touches the KB.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from openkb.model import FileFailure, PageTexts, PrepareTask

# Below this a PDF converts in well under a second: splitting would only add
# the parts' reopening of the file.
SPLIT_MIN_BYTES = 512 * 1024


def should_split(task: PrepareTask, jobs: int) -> bool:
    return jobs > 1 and task.kind == "pdf" and task.size >= SPLIT_MIN_BYTES


def split(task: PrepareTask, parts: int) -> list[PrepareTask]:
    return [dataclasses.replace(task, part=(i, parts)) for i in range(parts)]


@dataclass
class Assembly:
    """The parts of one split PDF, as they come back from the workers."""

    task: PrepareTask
    parts: int
    received: int = 0
    busy_ms: float = 0.0
    failure: FileFailure | None = None
    texts: dict[int, str] = field(default_factory=dict)
    count: int = 0
    unreadable: int = 0
    image_pages: int = 0

    def add(self, result: PageTexts | FileFailure, dur_ms: float) -> None:
        self.received += 1
        self.busy_ms += dur_ms
        if isinstance(result, FileFailure):
            # Every part reads the same bytes, so the first failure is the
            # file's; the others, if any, say the same.
            self.failure = self.failure or result
            return
        self.count = result.count
        self.unreadable += result.unreadable
        self.image_pages += result.image_pages
        self.texts.update(result.texts)

    @property
    def complete(self) -> bool:
        return self.received == self.parts

    def whole(self) -> PrepareTask:
        """The task that prepares the document from every page's text."""
        pages = PageTexts(self.task.seq, self.count, self.texts, self.unreadable,
                          self.image_pages)
        return dataclasses.replace(self.task, pages=pages)
