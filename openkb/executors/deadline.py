"""A per-file deadline for code running on a thread that is not the main one.

SIGALRM (what ``--jobs 1`` uses) only reaches the main thread, and a thread
cannot be killed. What can be done is to raise an exception *in* the thread:
:func:`thread_deadline` arms a timer that, at the deadline, schedules
:class:`Timeout` in the thread that armed it (``PyThreadState_SetAsyncExc``).
The interpreter raises it at the thread's next Python instruction, so a
pure-Python converter stops there; a thread inside a C call (PDFium) stops
only when the call returns. The executor that runs the thread fails the file
at the deadline either way and stops waiting for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator


class Timeout(BaseException):
    """Raised in a converting thread at its deadline. Not an Exception: the
    PDF converter catches Exception around library calls, which would turn
    a timeout into "malformed" and let the conversion go on."""


def _raise_in(thread_id: int, exc_type: type[BaseException] | None) -> None:
    # None clears an exception scheduled but not yet raised.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None)


@contextlib.contextmanager
def thread_deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Timeout` in this thread if the block outlasts ``seconds``.

    The timer fires at most once, and only while the block runs (both under
    one lock), and leaving the block clears a Timeout scheduled but not yet
    raised: none can land in the code that runs after it."""
    thread_id = threading.get_ident()
    lock = threading.Lock()
    armed = True

    def fire() -> None:
        with lock:
            if armed:
                _raise_in(thread_id, Timeout)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            armed = False
            _raise_in(thread_id, None)
