"""`openkb sync` (and its rendering): registered on the app by :func:`register`."""

# Real annotations, not `from __future__`: typer evals string ones (start-up);
# the others are quoted where they name what openkb.api loads on first use.

import signal
import threading
import time
from typing import Annotated, Any

import typer

from openkb import api
from openkb.cli import render
from openkb.cli.options import ExecutorOpt, JobsOpt, RehashOpt, RetryFailedOpt, SchedulerOpt
from openkb.cli.session import (
    interruptible,
    lock_wait_printer,
    options,
    progress_for,
    progress_view,
    reports_errors,
    stderr,
    stdout,
)


def sync_report_json(report: "api.SyncReport") -> dict[str, Any]:
    return render.add_report_json(report) | {
        "moved": [{"name": n, "from": old, "file": new} for n, old, new in report.moved],
        "removed": [{"name": n, "origin": origin} for n, origin in report.removed],
        "dry_run": report.dry_run,
        "kept_raw": report.kept_raw,
        "documents_under": report.documents_under,
        "refused": report.refused,
    }


def print_sync_summary(report: "api.SyncReport", quiet: bool, verbose: bool) -> None:
    out = stderr() if quiet else stdout()
    would = "would " if report.dry_run else ""
    if report.dry_run:
        for name, display in report.added:
            out.print(f"would add {render.safe(display)} as {render.safe(name)}")
        for name, display in report.updated:
            out.print(f"would update {render.safe(name)} from {render.safe(display)}")
    for name, old, new in report.moved:
        out.print(f"{would}move {render.safe(name)}: {render.safe(old)} -> {render.safe(new)}")
    for name, origin in report.removed:
        out.print(f"{would}remove {render.safe(name)} ({render.safe(origin)} is gone)")
    if report.kept_raw and report.removed and not report.dry_run:
        out.print("originals of removed documents moved to attic/")
    if not quiet or report.failed:
        render.print_add_summary(out, report, verbose=verbose)
    if report.refused:
        stderr().print(f"[red]error:[/] the sync would be refused: {render.safe(report.refused)}")


def register(app: typer.Typer) -> None:
    app.command()(sync)
    app.command()(watch)
    app.command()(failures)


def _batch_line(batch: "api.WatchBatch") -> str:
    when = time.strftime("%H:%M:%S")
    if batch.error:
        return f"{when} [yellow]warning:[/] {render.safe(batch.error)}"
    r = batch.report
    assert r is not None
    what = "catch-up sync" if not batch.touched else f"batch {batch.number}, " \
        f"{batch.touched} path(s) changed"
    stopped = f"\n  [red]{render.safe(r.out_of_space.message)}[/]" if r.out_of_space else ""
    return (f"{when} {what}: added {len(r.added)}, updated {len(r.updated)}, moved "
            f"{len(r.moved)}, removed {len(r.removed)}, failed {len(r.failed)}"
            + "".join(f"\n  failed {render.safe(f.display)}: {render.safe(f.reason)}"
                      for f in r.failed) + stopped)


@reports_errors
def watch(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Files and directories to follow.")],
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, help="Worker processes per batch (default: config "
        "file_processing_jobs, else one per core).")] = None,
    debounce: Annotated[float, typer.Option(
        "--debounce", metavar="SECONDS", min=0, help="Wait until changed files have kept "
        "their size and mtime this long before syncing them.")] = 2.0,
) -> None:
    """Sync PATHS, then keep syncing them as files change, until Ctrl-C."""
    opts = options(ctx)
    stop = threading.Event()
    out = stdout()

    def on_signal(signum: int, frame: object) -> None:
        if not stop.is_set() and not opts.quiet:
            stderr().print("\n[yellow]stopping after the batch in flight[/]")
        stop.set()

    def on_batch(batch: "api.WatchBatch") -> None:
        if not opts.quiet or batch.error:
            out.print(_batch_line(batch))

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # On a terminal: "watching N paths · last batch … · idle Ns", live.
    view = None
    if not opts.quiet and stderr().is_terminal:
        from openkb.cli.watch_view import WatchLiveView  # rich.live: only when it draws

        view = WatchLiveView(stderr(), len(paths))
    try:
        if not opts.quiet:
            out.print(f"watching {len(paths)} path(s); Ctrl-C stops")
        with progress_for(opts) as progress:
            if view is not None:
                progress.subscribe(view)
            report = api.watch(opts.kb, paths, progress, stop=stop, jobs=jobs,
                               debounce_s=debounce, on_batch=on_batch,
                               lock_timeout=opts.lock_timeout,
                               on_lock_wait=lock_wait_printer(opts.quiet))
    finally:
        if view is not None:
            view.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not opts.quiet:
        out.print(f"stopped after {report.batches} batch(es)")


@reports_errors
def failures(ctx: typer.Context, json_out: Annotated[bool, typer.Option(
        "--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the files that failed and are not retried until they change."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        rows = api.failures(opts.kb, progress)
    if json_out:
        render.print_json([{"file": r.origin, "reason": r.reason, "permanent": r.permanent,
                            "first_seen": r.first_seen, "last_seen": r.last_seen,
                            "tries": r.tries} for r in rows])
        return
    out = stdout()
    if not rows:
        out.print("no remembered failures")
        return
    for row in rows:
        kind = "permanent" if row.permanent else "transient"
        out.print(f"{render.safe(row.origin)}: {render.safe(row.reason)}")
        out.print(f"  [dim]{kind}, {row.tries} tries, first {row.first_seen}, "
                  f"last {row.last_seen}[/]")
    out.print("[dim]a file is tried again when it changes, or with --retry-failed[/]")


@reports_errors
def sync(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Files and directories to keep in step.")],
    jobs: JobsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change "
                                          "nothing.")] = False,
    keep_raw: Annotated[bool, typer.Option("--keep-raw", help="Move the originals of removed "
                                           "documents to attic/.")] = False,
    max_delete: Annotated[str | None, typer.Option(
        "--max-delete", metavar="N|P%", help="Refuse (exit 2) to remove more documents than "
        "this (default: config sync_max_delete, 50% of those under the paths).")] = None,
    rehash: RehashOpt = False,
    retry_failed: RetryFailedOpt = False,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a "
                                           "summary.")] = False,
) -> None:
    """Add new and changed files under PATHS, and move or remove the documents whose
    files are gone there."""
    opts = options(ctx)
    err = stderr()
    view = progress_view(err, wanted=not opts.quiet and not json_out and not dry_run)
    with progress_for(opts) as progress, interruptible(opts.quiet) as cancel:
        if view is not None:
            progress.subscribe(view)
        try:
            report = api.sync(opts.kb, paths, progress, jobs=jobs, dry_run=dry_run,
                              keep_raw=keep_raw, max_delete=max_delete, rehash=rehash,
                              retry_failed=retry_failed, executor=executor,
                              scheduler=scheduler, cancel=cancel,
                              lock_timeout=opts.lock_timeout,
                              on_lock_wait=lock_wait_printer(opts.quiet))
        finally:
            if view is not None:
                view.close()
    if json_out:
        render.print_json(sync_report_json(report))
    else:
        print_sync_summary(report, opts.quiet, opts.debug)
    raise typer.Exit(report.exit_code)
