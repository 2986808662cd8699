"""The window: files admitted (prefiltered) but not yet committed.

Commits go in scan order, so a slow file at the head holds back everything
after it; a deep window keeps the workers busy meanwhile. It is bounded by
count and by bytes, so memory is too (back-pressure), and it decides when
the prepared files at its head are worth a commit.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Container

# A prepared document waits at most this long for its commit group to fill.
MAX_GROUP_WAIT_S = 0.5


class Window:
    def __init__(self, max_files: int, max_bytes: int, group_size: int) -> None:
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.group_size = group_size
        self._pending: deque[int] = deque()  # scan positions, in order
        self._sizes: dict[int, int] = {}
        self._bytes = 0
        self._ready_since: float | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def has_room(self) -> bool:
        """Another file may be admitted (one always may into an empty window,
        however large it is)."""
        return len(self._pending) < self.max_files and (
            self._bytes < self.max_bytes or not self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.max_files or self._bytes >= self.max_bytes

    def admit(self, seq: int, size: int) -> None:
        self._pending.append(seq)
        self._sizes[seq] = size
        self._bytes += size

    def ready(self, finished: Container[int]) -> int:
        """How many files at the head of the scan order are prepared (or
        failed), up to one commit group."""
        count = 0
        for seq in self._pending:
            if count == self.group_size or seq not in finished:
                break
            count += 1
        return count

    def commit_due(self, ready: int, exhausted: bool) -> bool:
        """Commit the ``ready`` head now, or wait for the group to fill?"""
        if not ready:
            return False
        now = time.monotonic()
        if self._ready_since is None:
            self._ready_since = now
        due = (ready >= self.group_size
               or (exhausted and ready == len(self._pending))  # nothing else is coming
               or self.full()
               or now - self._ready_since >= MAX_GROUP_WAIT_S)  # bound commit latency
        if due:
            self._ready_since = None
        return due

    def take(self, count: int) -> list[int]:
        """Remove the first ``count`` files; their scan positions, in order."""
        taken = [self._pending.popleft() for _ in range(count)]
        for seq in taken:
            self._bytes -= self._sizes.pop(seq)
        return taken
