"""What an add reports, and the one place that tallies each file's outcome.

Every file ends as added, updated, skipped (with a reason) or failed (with
a reason); :class:`Tally` records it in the report and the live counts and
emits the event that says so, whichever stage decided it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openkb.diskspace import OutOfSpace
from openkb.errors import exit_code_of_run
from openkb.ingest.spill import SpillList
from openkb.model import FileFailure, Skipped
from openkb.progress import Progress


class CancelToken:
    """Set by the CLI's SIGINT handler; read between commits."""

    def __init__(self) -> None:
        self.stop_requested = False


@dataclass
class Counts:
    total: int = 0
    prepared: int = 0
    committed: int = 0
    skipped: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class AddReport:
    # One entry per file: kept on disk past a few hundred (openkb.ingest.spill),
    # so a run's memory does not grow with the number of files it adds.
    added: SpillList[tuple[str, str]] = field(default_factory=SpillList)  # (name, display)
    updated: SpillList[tuple[str, str]] = field(default_factory=SpillList)
    skipped: SpillList[Skipped] = field(default_factory=SpillList)
    # In memory: failures are few, and each is printed with its reason.
    failed: list[FileFailure] = field(default_factory=list)
    interrupted: bool = False
    bytes_committed: int = 0
    phase_ms: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    jobs: int = 1
    # LLM counters when summaries were asked for (openkb.llm.stage.LlmStage.counters)
    llm: dict[str, int] = field(default_factory=dict)
    llm_stopped: str | None = None  # why the endpoint refused every call, once
    out_of_space: OutOfSpace | None = None  # the disk filled up and stopped the run

    @property
    def exit_code(self) -> int:
        return exit_code_of_run(failed=bool(self.failed) or self.out_of_space is not None,
                                interrupted=self.interrupted)


class Tally:
    """The report, the live counts, and the events that announce outcomes."""

    def __init__(self, progress: Progress, jobs: int) -> None:
        self.progress = progress
        self.report = AddReport(jobs=jobs)
        self.counts = Counts()

    def skip(self, skipped: Skipped, **fields: object) -> None:
        """``fields``: what the prefilter learnt (``bytes``, ``hash_ms``)."""
        self.report.skipped.append(skipped)
        self.counts.skipped += 1
        self.progress.emit("prefilter", "point", "prefilter", file=skipped.display,
                           outcome=f"skipped:{skipped.reason}", **fields)

    def fail(self, failure: FileFailure, *, counted: bool = True) -> None:
        """``counted=False``: already in ``counts`` (the scan counts its own)."""
        self.report.failed.append(failure)
        if counted:
            self.counts.failed += 1
        self.progress.emit("file_error", "point", "prepare", file=failure.display,
                           error=failure.reason[:1000], counts=self.counts.as_dict())

    def committed(self, name: str, display: str, size: int, *, updated: bool) -> None:
        (self.report.updated if updated else self.report.added).append((name, display))
        self.report.bytes_committed += size
        self.counts.committed += 1

    def summary_fields(self, max_worker_rss_mib: float) -> dict[str, object]:
        """What the terminal event says about an add, beyond what every run says."""
        skipped_by_reason: dict[str, int] = {}
        for skipped in self.report.skipped:
            skipped_by_reason[skipped.reason] = skipped_by_reason.get(skipped.reason, 0) + 1
        return {
            "counts": self.counts.as_dict(),
            "bytes": self.report.bytes_committed,
            "added": len(self.report.added),
            "updated": len(self.report.updated),
            "skipped_by_reason": skipped_by_reason,
            "out_of_space": self.report.out_of_space is not None,
            # Workers are the fork server's children, not ours: they report it.
            "max_worker_rss_mib": round(max_worker_rss_mib, 1),
        }
