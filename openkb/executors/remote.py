"""The prepare task as a Dask worker runs it.

It takes the file's bytes (or, with ``dask_inputs: path``, reads the path
itself), converts and analyzes them, and returns everything the commit
needs as one bytes object: the committing process stages it. The worker
never touches the KB's disk, so it may run on any machine with openkb
installed.
"""

from __future__ import annotations

import os
import pickle
import resource
import time
from typing import Any

from openkb.executors.deadline import Timeout, thread_deadline
from openkb.model import FileFailure, PrepareTask
from openkb.prepare.convert_pdf import extract_pages
from openkb.prepare.sniff import detect_kind
from openkb.prepare.stage import PrepareLimits, build_document, read_input
from openkb.prepare.worker import describe_failure, timeout_reason

TOPIC = "openkb-prepare"  # the worker's start reports, read by the client


def prepare_remote(token: int, task: PrepareTask, limits: PrepareLimits, data: bytes | None,
                   timeout_s: float, memory_mb: int) -> bytes:
    """Pickled ``(result, dur_ms, outcome, peak_rss_mib, address)``, where
    result is a :class:`~openkb.prepare.stage.Built`, the page texts of one
    part of a long PDF, or a :class:`~openkb.model.FileFailure`."""
    address = _report_start(token)
    start = time.perf_counter()
    outcome = "ok"
    result: Any
    try:
        # The client fails the file at the deadline; this frees the
        # worker's thread too (see openkb.executors.deadline).
        with thread_deadline(timeout_s):
            result = _run(task, limits, data)
    except Timeout:
        result = FileFailure(task.seq, task.display, timeout_reason(timeout_s))
        outcome = "error"
    except Exception as exc:  # one file's failure is reported, not raised
        result = FileFailure(task.seq, task.display, describe_failure(exc, memory_mb))
        outcome = "error"
    dur_ms = round((time.perf_counter() - start) * 1000, 3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pickle.dumps((result, dur_ms, outcome, peak, address),
                        protocol=pickle.HIGHEST_PROTOCOL)


def _run(task: PrepareTask, limits: PrepareLimits, data: bytes | None) -> Any:
    if data is None:
        data = read_input(task, limits)
    if task.part is None:
        return build_document(task, limits, data)
    detect_kind(task.path, data[:4096])  # a .pdf that is not one is rejected as usual
    return extract_pages(data, task.seq, *task.part, engine=limits.pdf_engine)


def _report_start(token: int) -> str:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not on a Dask worker (a direct call)
        return f"pid {os.getpid()}"
    worker.log_event(TOPIC, {"token": token, "address": worker.address, "pid": os.getpid()})
    return str(worker.address)
