"""What every command shares: global options, the event listeners, Ctrl-C,
and the one place where errors become messages and exit codes."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from openkb import api
from openkb.api import Holder, JsonlWriter, OpenKBError, Progress, exit_code_for

if TYPE_CHECKING:
    from openkb.api import CancelToken
    from openkb.cli.live import LiveView, PlainReporter

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class GlobalOptions:
    kb: str | None = None
    debug: bool = False
    quiet: bool = False
    progress_jsonl: str | None = None
    lock_timeout: float | None = None


class _ReaderMayLeave:
    """Standard output that a reader may stop reading (``openkb list --json |
    head``): the first broken pipe points the descriptor at /dev/null and the
    command goes on to its own end and exit code, quietly, as git and
    ripgrep do, instead of failing with "Broken pipe"."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def write(self, data: Any) -> int:
        try:
            return self._stream.write(data)
        except BrokenPipeError:
            self._gone()
            return len(data)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    @property
    def buffer(self) -> _ReaderMayLeave:
        return _ReaderMayLeave(self._stream.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def let_the_reader_leave() -> None:
    """Install :class:`_ReaderMayLeave` on a real process's stdout."""
    if not isinstance(sys.stdout, _ReaderMayLeave) and hasattr(sys.stdout, "fileno"):
        sys.stdout = _ReaderMayLeave(sys.stdout)  # type: ignore[assignment]


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def configure_logging(debug: bool) -> None:
    level = logging.DEBUG if debug or os.environ.get("OPENKB_LOG", "").lower() == "debug" \
        else logging.WARNING
    logger = logging.getLogger("openkb")
    logger.setLevel(level)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("openkb %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when
    logging was set up (a second command run in the same process, as tests
    do, must not write to the first one's closed stream)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextmanager
def progress_for(opts: GlobalOptions) -> Iterator[Progress]:
    """A Progress with the JSONL writer attached when asked for."""
    progress = Progress()
    path = opts.progress_jsonl or os.environ.get("OPENKB_PROGRESS_JSONL")
    writer = None
    if path:
        writer = JsonlWriter(path, warn=lambda msg: stderr().print(f"[yellow]warning:[/] {msg}"))
        progress.subscribe(writer)
    try:
        yield progress
    finally:
        if writer is not None:
            writer.close()


def progress_view(err: Console, wanted: bool) -> LiveView | PlainReporter | None:
    """What draws a long command's progress on stderr: the live view on a
    terminal, plain lines elsewhere, nothing if not ``wanted``."""
    if not wanted:
        return None
    # Imported here: rich's live display is for the commands that show one.
    from openkb.cli.live import LiveView, PlainReporter

    return LiveView(err) if err.is_terminal else PlainReporter(err)


def lock_wait_printer(quiet: bool) -> Callable[[Holder | None, float], None]:
    """Say once, then every 30 s, who holds the lock we wait for."""
    state = {"next": 0.0}

    def on_wait(holder: Holder | None, waited: float) -> None:
        if quiet or waited < state["next"]:
            return
        state["next"] = waited + 30
        who = holder.describe() if holder else "another openkb process"
        stderr().print(f"waiting for lock held by {who}")

    return on_wait


@contextmanager
def interruptible(quiet: bool) -> Iterator[CancelToken]:
    """Ctrl-C once: ask the run to stop after the commit in flight.
    Twice: raise KeyboardInterrupt, which rolls that commit back."""
    token = api.CancelToken()  # loads the ingest pipeline: only `add` gets here
    presses = {"n": 0}

    def handler(signum: int, frame: object) -> None:
        presses["n"] += 1
        if presses["n"] == 1:
            token.stop_requested = True
            if not quiet:
                stderr().print("\n[yellow]stopping after the current commit; "
                               "Ctrl-C again to roll it back[/]")
        elif presses["n"] == 2:
            raise KeyboardInterrupt
        # Later presses are ignored: the rollback must be allowed to finish.

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


# Hints for errors about an API argument the user gave as a flag: the
# library names its arguments ("lock timeout", "kb_dir"); only the CLI knows
# the flags. (`jobs` and `limit` need none: typer rejects a value below 1
# before the API sees it.)
_FLAG_HINTS = {
    "lock_timeout": "wait for it to finish, or raise --lock-timeout",
    "scheduler": "drop --scheduler, or use --executor dask",
    "kb_dir": "pass --kb DIR, set OPENKB_DIR, or create one with `openkb init DIR`",
    "max_delete": "check that every path is mounted and whole; if those documents should "
                  "go, run it again with a higher --max-delete (a count, or a percentage "
                  "such as --max-delete 100%)",
    "llm_model": "set llm.model in .openkb/config.yaml, or pass --llm-model MODEL",
}


def reports_errors(fn: F) -> F:
    """Turn openkb errors into a message on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OpenKBError as exc:
            console = stderr()
            console.print(f"[red]error:[/] {escape(str(exc))}")
            hint = _FLAG_HINTS.get(exc.argument or "", exc.hint)
            if hint:
                console.print(f"[dim]hint:[/] {escape(hint)}")
            raise typer.Exit(exit_code_for(exc)) from None
        except OSError as exc:
            # Commits and recovery turn their I/O errors into openkb errors;
            # this is reading or setting up, where nothing was changed.
            console = stderr()
            console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            console.print("[dim]hint:[/] check the path and the disk it is on; "
                          "`openkb verify` checks the KB")
            raise typer.Exit(exit_code_for(exc)) from None
        except KeyboardInterrupt as exc:
            stderr().print("[red]interrupted[/]")
            raise typer.Exit(exit_code_for(exc)) from None

    return wrapper  # type: ignore[return-value]
