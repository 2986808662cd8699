"""One error hierarchy for openkb, mapped to exit codes in one place.

Every error says what happened and what the user can do next, in the
library's words: it names an argument of the API (``jobs``), never a flag of
the CLI, and when it is about one, :attr:`OpenKBError.argument` names it, so
the CLI can say it its own way.

Exit codes are chosen here, by two functions: :func:`exit_code_for` for a
command that ended with an exception (an :class:`OpenKBError` brings its own
``exit_code``), and :func:`exit_code_of_run` for one that ran to its end
(some files failed, or the user stopped it). The CLI exits with what they
return, and the terminal event of :meth:`openkb.progress.Progress.run`
records it (an add's report asks :func:`exit_code_of_run` too). Only
typer chooses one without them: it exits 2 (``EXIT_USAGE``) on a command
line it cannot parse, before any openkb code runs.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCK_TIMEOUT = 3
EXIT_INTERRUPTED = 130


class OpenKBError(Exception):
    """Base of every error openkb reports to a user."""

    exit_code = EXIT_SOME_FAILED
    hint: str | None = None
    # The API argument the error is about ("jobs", "lock_timeout"), if any.
    argument: str | None = None

    def __init__(self, message: str, hint: str | None = None, *,
                 argument: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if argument is not None:
            self.argument = argument


def exit_code_for(error: BaseException) -> int:
    """The exit code of a command that ended with ``error``."""
    if isinstance(error, OpenKBError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    # An OSError while reading or setting up (commits and recovery turn
    # theirs into openkb errors), or a bug: the command failed.
    return EXIT_SOME_FAILED


def exit_code_of_run(*, failed: bool = False, interrupted: bool = False) -> int:
    """The exit code of a command that ran to its end: 130 if the user
    stopped it, 1 if some part of it failed, else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if failed else EXIT_OK


class UsageError(OpenKBError):
    """Bad arguments or a bad environment variable."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """config.yaml is unreadable or holds an invalid setting."""


class NotAKnowledgeBase(UsageError):
    """The directory given (or found) is not an openkb knowledge base."""


class UnknownDocument(UsageError):
    """A command named a document the registry does not hold."""


class LockTimeout(OpenKBError):
    """Another openkb process held the KB lock for longer than the lock timeout."""

    exit_code = EXIT_LOCK_TIMEOUT


class Interrupted(OpenKBError):
    """The user pressed Ctrl-C."""

    exit_code = EXIT_INTERRUPTED


class UnsafePath(OpenKBError):
    """A path would resolve outside the KB root. Never executed."""


class JournalRefused(OpenKBError):
    """A pending journal cannot be trusted (unknown version, path outside the KB).

    It is left in place, untouched, and every writing command refuses to run
    until a person has looked at it.
    """


class WrittenByNewerOpenKB(OpenKBError):
    """The KB has a schema or migrations this openkb does not know."""


class RecoveryFailed(OpenKBError):
    """Finishing a crashed transaction failed (an I/O error); its journal is kept."""


class CommitFailed(OpenKBError):
    """A transaction failed, and was finished as recovery would finish it.

    Usually it failed before its commit point and was rolled back: the KB is
    as it was before it. If the rollback failed too, the journal is kept and
    the KB is mid-transaction until the next command that takes the lock (or
    `openkb recover`) finishes it. A failure after the commit point finishes
    the transaction forward instead.
    """


class IndexUnreadable(OpenKBError):
    """The search index cannot be read (its FTS5 table is gone or damaged)."""


class VerifyFailed(OpenKBError):
    """`openkb verify` found inconsistencies (raised by the CLI, which gets a
    report back from the API)."""


class FileRejected(OpenKBError):
    """One input file cannot be ingested (encrypted, malformed, empty, too big...).

    Raised inside prepare; the pipeline records it against that file only and
    the run goes on.
    """


class ExecutorFailed(OpenKBError):
    """The executor preparing files is gone (a Dask scheduler lost) or cannot
    be started: the run stops; what it committed is kept."""
