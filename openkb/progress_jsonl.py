"""Progress events as JSON lines, for operators and for `openkb progress summarize`.

Every event (from this process or, through their pipes, from workers) is
written under one lock, so lines never interleave. Each line is written
with a single ``os.write`` on an ``O_APPEND`` descriptor and kept under
:data:`MAX_LINE` bytes, so concurrent writers from other runs appending to
the same file cannot tear it either. If an earlier crash left a torn last
line, a newline is written first, so the torn line stays one bad line and
the next record starts clean.

Telemetry never fails an ingest: if the file cannot be opened or a write
fails (full disk, EIO, a short write), ``warn`` is called once and events are
dropped from then on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable
from typing import Any

import orjson

MAX_LINE = 4000
# Fields that may be long, trimmed in this order until a line fits.
_TRIMMABLE = ("error", "workers", "inputs", "doc", "file", "skipped_by_reason", "phase_busy_ms")


_OPTIONS = orjson.OPT_NON_STR_KEYS


def encode_line(record: dict[str, Any]) -> bytes:
    line = orjson.dumps(record, default=str, option=_OPTIONS) + b"\n"
    if len(line) <= MAX_LINE:
        return line
    record = dict(record)
    for key in _TRIMMABLE:
        if key in record:
            value = record[key]
            record[key] = value[:200] if isinstance(value, str) else "(trimmed)"
            record["trimmed"] = True
            line = orjson.dumps(record, default=str, option=_OPTIONS) + b"\n"
            if len(line) <= MAX_LINE:
                return line
    return orjson.dumps({k: record[k] for k in ("schema", "run_id", "seq", "ts_ms", "t_ms",
                                                  "event", "phase", "kind") if k in record}
                        | {"trimmed": True}) + b"\n"


class JsonlWriter:
    """A progress listener that appends each event to ``path``.

    Written in the emitting thread: an ``os.write`` to an append-only file
    costs a few microseconds, less than handing each event to a writer
    thread would (a queue put, a wake-up, a GIL hand-off).
    """

    def __init__(self, path: str, warn: Callable[[str], None]) -> None:
        self.path = path
        self._warn = warn
        self._warned = False
        self._lock = threading.Lock()  # events come from the heartbeat thread too
        self._fd: int | None = None
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
            self._start_on_fresh_line()
        except OSError as exc:
            self._fail(exc)

    def _start_on_fresh_line(self) -> None:
        assert self._fd is not None
        info = os.fstat(self._fd)
        size = info.st_size
        # Only a regular file has a last line to look at (opening a FIFO or
        # a terminal to read it would block or steal input).
        if stat.S_ISREG(info.st_mode) and size:
            with open(self.path, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def __call__(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            return
        try:
            line = encode_line(record)
        except (TypeError, ValueError):  # a field orjson cannot encode: drop the event
            return
        with self._lock:
            if self._fd is None:
                return
            try:
                written = os.write(self._fd, line)
            except OSError as exc:
                self._fail(exc)
                return
            if written != len(line):
                # The disk filled mid-line: end the torn line, so whoever
                # appends next starts a clean one, and stop.
                with contextlib.suppress(OSError):
                    os.write(self._fd, b"\n")
                self._fail(OSError(errno.ENOSPC, "short write (disk full?)"))

    def _fail(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            # The warning goes to stderr, which may itself be gone (rich
            # raises SystemExit on a broken pipe).
            with contextlib.suppress(Exception, SystemExit):
                self._warn(f"cannot write progress events to {self.path}: "
                           f"{exc.strerror or exc}; the ingest goes on without them")
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._close_fd()
