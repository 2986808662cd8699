"""Options more than one command takes, declared once: `add` and `sync`
(openkb/cli/app.py and openkb/cli/sync_cmds.py) both use these, so a flag
means the same thing, with the same help, wherever it appears. A module of
its own: app.py imports sync_cmds, so sync_cmds cannot import app.py."""

from __future__ import annotations

from typing import Annotated

import typer

JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", min=1, help="Worker processes (default: config file_processing_jobs, "
    "else one per core).")]
RehashOpt = Annotated[bool, typer.Option(
    "--rehash", help="Read and hash every file, even those the stat cache says are "
    "unchanged.")]
RetryFailedOpt = Annotated[bool, typer.Option(
    "--retry-failed", help="Try again the files that failed for good before.")]
ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", help="Where files are prepared: process (default), thread, or dask "
    "(config executor).")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", metavar="ADDRESS", help="A Dask scheduler to prepare on, e.g. "
    "tcp://host:8786 (implies --executor dask; without it, dask starts a local cluster).")]
