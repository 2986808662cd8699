"""A re-sync of unchanged files, with the stat cache and without (``--rehash``).

The notes are generated once, given an mtime an hour back (a folder of
living notes is mostly old files; a file written within 2 s of a sync is
racily clean and hashed again, by design), added once, then synced again:
the wall time of `openkb sync` as a real process, start-up included, so the
ratio is what a user sees. ``resync_60k`` does the same with 60,000 notes,
registered without converting them (see its docstring)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench import corpus, run, synthetic
from bench.run import fresh_kb, median

Row = tuple[str, str, str]
HOUR_NS = 3600 * 10**9


def _sync(kb: Path, folder: Path, *extra: str) -> tuple[float, float]:
    """(wall, CPU of openkb's main process) of one `openkb sync`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", "sync",
                           "--jobs", "2", *extra, str(folder)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(run.SOURCE)}, cwd=run.SOURCE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"openkb sync failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _age(folder: Path) -> None:
    when = time.time_ns() - HOUR_NS
    for dirpath, _, files in os.walk(folder):
        for name in files:
            os.utime(os.path.join(dirpath, name), ns=(when, when))


def _measure(out: Path, count: int, runs: int, *, registered: bool = False) -> list[Row]:
    folder = corpus.generate(out / f"resync-{count}", count, prefix="sync")
    _age(folder)
    kb = fresh_kb(out / f"kb-resync-{count}")
    start = time.perf_counter()
    if registered:
        synthetic.fill_from_files(kb, folder)
    else:
        _sync(kb, folder)
    first = time.perf_counter() - start
    cached, rehash = [], []
    for _ in range(runs):  # interleaved: both see the same machine
        cached.append(_sync(kb, folder))
        rehash.append(_sync(kb, folder, "--rehash"))
    c, r = median([w for w, _ in cached]), median([w for w, _ in rehash])
    c_cpu, r_cpu = median([u for _, u in cached]), median([u for _, u in rehash])
    empty, _ = _sync(fresh_kb(out / "kb-resync-empty"), folder / "sync-000", "--dry-run")
    label = f"re-sync of {count:,} unchanged notes"
    how = "registered directly, nothing converted" if registered else "adds them"
    return [
        (f"first sync of {count:,} notes ({how})", f"{first:.1f} s", ""),
        (f"{label}: wall, stat cache / --rehash", f"{c:.2f} s / {r:.2f} s", ""),
        (f"{label}: CPU, stat cache / --rehash", f"{c_cpu:.2f} s / {r_cpu:.2f} s", ""),
        (f"{label}: wall ratio, stat cache / --rehash", f"{100 * c / r:.0f} %", "<= 20 %"),
        ("start-up floor: dry-run sync of 100 notes into an empty KB", f"{empty:.2f} s", ""),
    ]


def resync(out: Path, runs: int, quick: bool) -> list[Row]:
    return _measure(out, 1_000 if quick else 10_000, 1 if quick else runs)


def resync_60k(out: Path, runs: int, quick: bool) -> list[Row]:
    """60,000 notes: a real first sync takes 20 minutes on two cores, so the
    notes are registered straight into the registry (bench/synthetic.py),
    as that sync would leave documents and stat cache; the re-syncs timed
    are real `openkb sync` runs, and neither reads the wiki."""
    return _measure(out, 6_000 if quick else 60_000, 1 if quick else runs, registered=True)
