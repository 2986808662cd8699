"""The `openkb` command line: parse options, call one API function, render."""

# Real annotations, not `from __future__`: typer evals string ones (start-up).

import signal
import sys
from typing import Annotated

import typer

from openkb import __version__, api
from openkb.cli import render, sync_cmds
from openkb.cli.options import ExecutorOpt, JobsOpt, RehashOpt, RetryFailedOpt, SchedulerOpt
from openkb.cli.session import (
    GlobalOptions,
    configure_logging,
    interruptible,
    let_the_reader_leave,
    lock_wait_printer,
    options,
    progress_for,
    progress_view,
    reports_errors,
    stderr,
    stdout,
)

app = typer.Typer(
    name="openkb",
    help="Journaled, crash-safe ingest of documents into a file knowledge base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
progress_app = typer.Typer(help="Read progress JSONL files written by --progress-jsonl.",
                           no_args_is_help=True)
debug_app = typer.Typer(help="Tools for testing openkb itself.", no_args_is_help=True)
app.add_typer(progress_app, name="progress")
app.add_typer(debug_app, name="debug")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LlmOpt = Annotated[bool, typer.Option(
    "--llm", help="Summaries written by the LLM endpoint in config llm: (or OPENAI_BASE_URL); "
    "replies are cached, so none is paid for twice.")]
LlmModelOpt = Annotated[str | None, typer.Option(
    "--llm-model", metavar="MODEL", help="The model to ask (implies --llm; default: config "
    "llm.model).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openkb {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    kb: Annotated[str | None, typer.Option(
        "--kb", envvar="OPENKB_DIR", help="Knowledge base directory (default: the nearest "
        "one at or above the current directory).")] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Log one timing line per committed document (also OPENKB_LOG=debug)."
    )] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    progress_jsonl: Annotated[str | None, typer.Option(
        "--progress-jsonl", envvar="OPENKB_PROGRESS_JSONL", metavar="PATH",
        help="Append progress events (openkb.progress.v2) to PATH.")] = None,
    lock_timeout: Annotated[float | None, typer.Option(
        "--lock-timeout", metavar="SECONDS",
        help="Give up (exit 3) if another openkb holds the KB lock this long.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    configure_logging(debug)
    ctx.obj = GlobalOptions(kb=kb, debug=debug, quiet=quiet, progress_jsonl=progress_jsonl,
                            lock_timeout=lock_timeout)


@app.command()
@reports_errors
def init(ctx: typer.Context, directory: Annotated[str | None, typer.Argument(
        help="Where to create the KB (default: --kb, else the current directory).")] = None,
) -> None:
    """Create a knowledge base in DIRECTORY."""
    given = options(ctx).kb
    if given is not None and directory is not None and given != directory:
        raise api.UsageError(f"init was given two places: --kb {given} and {directory}",
                             hint="give one of them")
    # `openkb --kb my-kb init` means my-kb, as every other command reads --kb.
    result = api.init(directory or given or ".")
    verb = "created" if result.created else "already a knowledge base:"
    stdout().print(f"{verb} {render.safe(str(result.root))}")


@app.command()
@reports_errors
def add(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Files and directories to add.")],
    jobs: JobsOpt = None,
    rehash: RehashOpt = False,
    retry_failed: RetryFailedOpt = False,
    llm: LlmOpt = False,
    llm_model: LlmModelOpt = None,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add documents (Markdown, text, HTML, PDF); directories are walked recursively."""
    opts = options(ctx)
    err = stderr()
    view = progress_view(err, wanted=not opts.quiet and not json_out)
    lock_printer = lock_wait_printer(opts.quiet)

    def on_lock_wait(holder, waited):  # type: ignore[no-untyped-def]
        from openkb.cli.live import LiveView  # loaded by progress_view if it is one

        if isinstance(view, LiveView):
            view.lock_wait(holder.describe() if holder else "another openkb process", waited)
        else:
            lock_printer(holder, waited)

    with progress_for(opts) as progress, interruptible(opts.quiet) as cancel:
        if view is not None:
            progress.subscribe(view)
        try:
            report = api.add(opts.kb, paths, progress, jobs=jobs, cancel=cancel,
                             lock_timeout=opts.lock_timeout, on_lock_wait=on_lock_wait,
                             llm=llm or llm_model is not None, llm_model=llm_model,
                             rehash=rehash, retry_failed=retry_failed,
                             executor=executor, scheduler=scheduler)
        finally:
            if view is not None:
                view.close()
    if json_out:
        render.print_json(render.add_report_json(report))
    elif not opts.quiet or report.failed:
        render.print_add_summary(err if opts.quiet else stdout(), report, verbose=opts.debug)
    raise typer.Exit(report.exit_code)


@app.command()
@reports_errors
def remove(
    ctx: typer.Context,
    docs: Annotated[list[str], typer.Argument(help="Document names (see `openkb list`).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; change "
                                          "nothing.")] = False,
    keep_raw: Annotated[bool, typer.Option("--keep-raw", help="Move the original files to "
                                           "attic/ instead of deleting them.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove documents and their pages, in one transaction."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        report = api.remove(opts.kb, docs, progress, dry_run=dry_run, keep_raw=keep_raw,
                            lock_timeout=opts.lock_timeout,
                            on_lock_wait=lock_wait_printer(opts.quiet))
    if json_out:
        render.print_json({"removed": [r.name for r in report.removed], "dry_run": dry_run,
                           "kept_raw": keep_raw, "txid": report.txid})
        return
    verb = "would remove" if dry_run else "removed"
    for row in report.removed:
        stdout().print(f"{verb} {render.safe(row.name)} ({render.safe(row.title)})")
    if keep_raw and not dry_run:
        stdout().print("originals moved to attic/")


sync_cmds.register(app)


@app.command("list")
@reports_errors
def list_(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the documents in the knowledge base."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        rows = api.list_documents(opts.kb, progress)
    if json_out:
        render.print_json([render.document_json(r) for r in rows])
    elif rows:
        stdout().print(render.documents_table(rows))
    else:
        stdout().print("no documents yet: add some with `openkb add PATH`")


@app.command()
@reports_errors
def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Summarise the knowledge base and any ingest running on it."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        report = api.status(opts.kb, progress)
    if json_out:
        render.print_json(report)
        return
    out = stdout()
    out.print(f"knowledge base {render.safe(str(report.root))}")
    out.print(f"  {report.documents} documents, {report.concepts} concepts, "
              f"{render.human_bytes(report.total_bytes)} of originals")
    if report.last_change:
        out.print(f"  last change: {render.safe(report.last_change)}")
    if report.failures:
        out.print(f"  {report.failures} file(s) failed and are not retried until they change: "
                  "`openkb failures` lists them")
    unfinished = report.pending_journals - len(report.refused_journals)
    if unfinished:
        out.print(f"  [yellow]{unfinished} unfinished transaction(s)[/]: the next "
                  "command (or `openkb recover`) finishes them")
    for message in report.refused_journals:
        out.print(f"  [red]refused journal[/]: {render.safe(message)}")
    if report.llm_pending:
        out.print(f"  [yellow]{report.llm_pending} document(s) wait for an LLM summary[/]: "
                  "the next `openkb add --llm` or `openkb recompile --llm` retries them")
    if report.lock_holder:
        out.print(f"  locked by {render.safe(report.lock_holder.describe())}")
    for run in report.running:
        c = run.counts
        if run.command == "openkb watch":
            out.print(f"  running: openkb watch (pid {run.pid}) since {render.ago(run.started)}, "
                      f"{c.get('batches', 0)} batch(es), last {render.ago(run.last_progress)}; "
                      f"{render.safe(run.phase)}")
            continue
        out.print(f"  running: {render.safe(run.command)} (pid {run.pid}), {run.phase}, "
                  f"{c.get('committed', 0)}/{c.get('total', 0)} committed, last progress "
                  f"{render.ago(run.last_progress)}, started {render.ago(run.started)}")


@app.command()
@reports_errors
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="Words to look for (all must appear).")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many "
                                       "documents.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Full-text search (BM25), best passage per document."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        hits = api.search(opts.kb, query, progress, limit=limit)
    if json_out:
        render.print_json([render.hit_json(h) for h in hits])
    elif hits:
        render.print_hits(stdout(), hits)
    else:
        stdout().print("no matches")


@app.command()
@reports_errors
def show(ctx: typer.Context, doc: Annotated[str, typer.Argument(help="Document name.")],
         json_out: JsonOpt = False) -> None:
    """Show a document's summary page and where its files are."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        result = api.show(opts.kb, doc, progress)
    if json_out:
        render.print_json(render.document_json(result.row) | {
            "summary_path": str(result.summary_path), "source_path": str(result.source_path),
            "raw_path": str(result.raw_path), "summary": result.summary})
        return
    out = stdout()
    out.print(result.summary, markup=False, highlight=False)
    out.print(f"[dim]summary {render.safe(str(result.summary_path))}\n"
              f"source  {render.safe(str(result.source_path))}\n"
              f"raw     {render.safe(str(result.raw_path))}[/]")
    if result.row.info.terms:
        out.print(f"[dim]key terms: {render.safe(', '.join(result.row.info.terms))}[/]")


@app.command()
@reports_errors
def recompile(ctx: typer.Context, llm: LlmOpt = False, llm_model: LlmModelOpt = None) -> None:
    """Re-render every summary, concept page and index.md from the registry."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        report = api.recompile(opts.kb, progress, lock_timeout=opts.lock_timeout,
                               on_lock_wait=lock_wait_printer(opts.quiet),
                               llm=llm or llm_model is not None, llm_model=llm_model)
    stdout().print(f"recompiled pages of {report.documents} documents (tx {report.txid})")
    if report.llm is not None:
        render.print_llm_refresh(stdout(), report.llm)


@app.command()
@reports_errors
def recover(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Finish transactions a crash left unfinished and sweep leftovers."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        report = api.recover(opts.kb, progress, lock_timeout=opts.lock_timeout,
                             on_lock_wait=lock_wait_printer(opts.quiet))
    if json_out:
        render.print_json(report)
        return
    out = stdout()
    if not report.anything:
        out.print("nothing to recover")
    for txid in report.rolled_back:
        out.print(f"rolled back unfinished transaction {txid}")
    for txid in report.rolled_forward:
        out.print(f"finished committed transaction {txid}")
    for txid in report.discarded:
        out.print(f"removed the unreadable journal of transaction {txid}, which never "
                  "committed")
    if report.swept:
        out.print(f"removed {len(report.swept)} leftover file(s)")


@app.command()
@reports_errors
def verify(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Fix what the KB's own data "
                                         "allows; quarantine orphans.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="List every problem; "
                                          "by default a kind with many is counted and "
                                          "sampled, and a crashed transaction's paths are "
                                          "counted under its journal.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check every invariant of the knowledge base; exit 1 if any fails."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        report = api.verify(opts.kb, progress, repair=repair, lock_timeout=opts.lock_timeout,
                            on_lock_wait=lock_wait_printer(opts.quiet))
    if json_out:
        render.print_json(report)
    else:
        render.print_verify_report(stdout(), report, verbose)
    if not report.ok:
        raise api.VerifyFailed("verify found problems")


@progress_app.command("summarize")
@reports_errors
def progress_summarize(
    file: Annotated[str, typer.Argument(help="A progress JSONL file.")],
    run: Annotated[str | None, typer.Option("--run", help="Only this run id (default: the "
                                            "last run in the file).")] = None,
    chrome_trace: Annotated[str | None, typer.Option(
        "--chrome-trace", metavar="OUT.json", help="Also write a Chrome trace of the run "
        "(open in ui.perfetto.dev or chrome://tracing).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Where the time went in a run: per phase, lock wait, slowest files."""
    from openkb.cli.summary_view import print_summary

    summary = api.summarize(file, run_id=run)
    if chrome_trace:
        api.write_chrome_trace(file, summary.run_id, chrome_trace)
    if json_out:
        render.print_json(summary)
    else:
        print_summary(stdout(), summary)
        if chrome_trace:
            stdout().print(f"chrome trace written to {render.safe(chrome_trace)}")


@debug_app.command("crashpoints")
def debug_crashpoints() -> None:
    """List every crash point (for OPENKB_CRASH_AT=<name>[:n])."""
    for name in api.CRASHPOINTS:
        typer.echo(name)


@debug_app.command("tree-hash")
@reports_errors
def debug_tree_hash(ctx: typer.Context) -> None:
    """Print a hash of the KB's logical content (files and registry rows)."""
    opts = options(ctx)
    with progress_for(opts) as progress:
        typer.echo(api.tree_hash(opts.kb, progress))


def main() -> None:
    let_the_reader_leave()
    try:
        app(prog_name="openkb")
    except KeyboardInterrupt as exc:  # a Ctrl-C outside any command's own handling
        sys.exit(api.exit_code_for(exc))
    finally:
        # One more Ctrl-C while the interpreter shuts down must not turn a
        # clean exit 130 into death by SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
