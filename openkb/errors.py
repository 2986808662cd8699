"""One error hierarchy for openkb, mapped to exit codes in one place.

Every error says what happened and what the user can do next. The CLI prints
``str(error)`` and, when present, ``error.hint``; it exits with
``error.exit_code``. Nothing else in the code base chooses an exit code.
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

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


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
    """Another openkb process held the KB lock for longer than --lock-timeout."""

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


class RecoveryFailed(OpenKBError):
    """Finishing a crashed transaction failed (an I/O error); its journal is kept."""


class CommitFailed(OpenKBError):
    """A transaction failed and was rolled back; the KB is as it was before it."""


class IndexUnreadable(OpenKBError):
    """The search index cannot be read (its FTS5 table is gone or damaged)."""


class VerifyFailed(OpenKBError):
    """`openkb verify` found inconsistencies."""


class FileRejected(OpenKBError):
    """One input file cannot be ingested (encrypted, malformed, empty, too big...).

    Raised inside prepare; the pipeline records it against that file only and
    the run goes on.
    """
