"""Records of running ingests, ``.openkb/runs/<run_id>.json``, for `openkb status`.

An ingest holds the KB lock only while it commits, so the lock holder
record alone cannot say that an add is running between commits. Each run
keeps its own record current (at start, on every heartbeat, at phase
changes) and deletes it at the end; a record whose process is gone is stale
and ignored (and swept by recovery).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from openkb import fsio
from openkb.layout import KBLayout
from openkb.lock import run_owner_alive


@dataclass
class RunRecord:
    run_id: str
    pid: int
    command: str
    started: float
    last_progress: float
    phase: str = "scan"
    counts: dict[str, int] = field(default_factory=dict)

    def path(self, layout: KBLayout) -> Path:
        return layout.runs_dir / f"{self.run_id}.json"

    def save(self, layout: KBLayout) -> None:
        """Advisory: replaced atomically so readers never see half a record,
        never fsynced (after a power cut it may be empty or short, and
        :func:`live_runs` skips it), and never an error (a full disk must
        not fail the ingest this record describes)."""
        with contextlib.suppress(OSError):
            fsio.write_atomic(self.path(layout), orjson.dumps(asdict(self)), durable=False)

    def delete(self, layout: KBLayout) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path(layout))


def live_runs(layout: KBLayout) -> list[RunRecord]:
    runs = []
    try:
        names = sorted(os.listdir(layout.runs_dir))
    except FileNotFoundError:
        return []
    for name in names:
        if not name.endswith(".json") or not run_owner_alive(name):
            continue
        try:
            runs.append(RunRecord(**orjson.loads((layout.runs_dir / name).read_bytes())))
        except (OSError, ValueError, TypeError):
            continue
    return runs


def now() -> float:
    return time.time()
