"""The KB's one exclusive lock, and the record that says who holds it.

``.openkb/lock`` is locked with flock through :class:`filelock.FileLock`; the
kernel drops the lock when the holder dies, so a crash never leaves a stale
lock, and the file itself is never deleted (deleting a lock file lets two
processes lock two different inodes). Beside it, ``lock.holder.json`` names
the holder (pid, command, since when) so a waiter can say who it waits for.
The record is advisory: it is trusted only while its pid is alive with the
same start time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from openkb import fsio
from openkb.errors import LockTimeout
from openkb.layout import KBLayout

WAIT_POLL_S = 0.1


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    started: float  # unix time the holding process started its command
    acquired: float  # unix time it took the lock
    process_created: float  # psutil create_time, to tell a reused pid apart

    def describe(self, now: float | None = None) -> str:
        held = human_duration((now or time.time()) - self.acquired)
        return f"{self.command} (pid {self.pid}, {held})"


def human_duration(seconds: float) -> str:
    """``42s``, ``2m10s``, ``3h05m``: how long, for a person."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def process_started(pid: int) -> float:
    """When process ``pid`` started (epoch seconds); LookupError if there is
    no such process or we may not see it."""
    # Imported here, as filelock is below: a read-only command on a clean KB
    # never asks, and both cost start-up time.
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError) as exc:
        raise LookupError(pid) from exc


def process_alive(pid: int, created: float) -> bool:
    try:
        return abs(process_started(pid) - created) < 1.0
    except LookupError:
        return False


def run_owner_alive(name: str) -> bool:
    """Is the process that owns a run id (``<pid>-<process start ms>-...``,
    see :func:`openkb.progress.new_run_id`) still running?"""
    parts = name.split("-")
    try:
        pid, created_ms = int(parts[0]), int(parts[1].split(".")[0])
    except (IndexError, ValueError):
        return False
    return process_alive(pid, created_ms / 1000)


def read_holder(layout: KBLayout) -> Holder | None:
    """The live holder of the lock, or None if the record is absent or stale."""
    try:
        data = orjson.loads(layout.lock_holder_path.read_bytes())
        holder = Holder(**data)
    except (OSError, ValueError, TypeError):
        return None
    return holder if process_alive(holder.pid, holder.process_created) else None


class KBLock:
    """Exclusive lock with a holder record; re-entrant within one process."""

    def __init__(self, layout: KBLayout, command: str) -> None:
        self.layout = layout
        self.command = command
        self.started = time.time()

    @functools.cached_property
    def _lock(self):
        # Made on first use: most read-only commands never lock, and importing
        # filelock is a visible part of their start-up.
        import filelock

        return filelock.FileLock(self.layout.lock_path, fallback_to_soft=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(
        self,
        timeout: float | None = None,
        on_wait: Callable[[Holder | None, float], None] | None = None,
    ) -> float:
        """Take the lock; return the seconds spent waiting.

        ``on_wait(holder, waited_s)`` is called about every poll while blocked.
        Raises :class:`LockTimeout` after ``timeout`` seconds (None: no limit).
        """
        if self._lock.is_locked:
            self._lock.acquire()
            return 0.0
        start = time.monotonic()
        while True:
            try:
                self._lock.acquire(timeout=0 if timeout is None else min(WAIT_POLL_S, timeout))
                break
            except TimeoutError:  # filelock.Timeout is one
                waited = time.monotonic() - start
                holder = read_holder(self.layout)
                if timeout is not None and waited >= timeout:
                    who = holder.describe() if holder else "another openkb process"
                    raise LockTimeout(
                        f"the KB at {self.layout.root} is locked by {who}; "
                        f"gave up after {timeout:g}s",
                        hint="wait for it to finish, or allow a longer lock timeout",
                        argument="lock_timeout",
                    ) from None
                if on_wait is not None:
                    on_wait(holder, waited)
                time.sleep(WAIT_POLL_S)
        self._write_holder()
        return time.monotonic() - start

    def release(self) -> None:
        if self._lock.lock_counter == 1:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.layout.lock_holder_path)
        self._lock.release()

    def _write_holder(self) -> None:
        # Advisory and rewritten on every acquisition, so not fsynced: after
        # a power cut it may be empty or short, which read_holder treats as
        # no record.
        record = orjson.dumps(
            {
                "pid": os.getpid(),
                "command": self.command,
                "started": self.started,
                "acquired": time.time(),
                "process_created": process_started(os.getpid()),
            }
        )
        # A full disk: waiters just cannot name us.
        with contextlib.suppress(OSError):
            fsio.write_atomic(self.layout.lock_holder_path, record, durable=False)
